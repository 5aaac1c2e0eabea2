// Skycast planning calendar: places the blocks the server computed (the schema's
// resolver) and edits the draft by direct manipulation. Pointer drag (mouse,
// pen, touch) creates, moves and resizes; MP3 files dropped from the desktop
// become a playlist in their slot; every block is focusable and keys do the same;
// each change says what it did and can be undone; a refused change leaves the
// calendar as it was. Without this script the page still shows the calendar and
// the rules page's forms do the editing. No dependency.
"use strict";

(() => {
  const cal = document.getElementById("calendar");
  if (!cal) return;
  const csrf = document.getElementById("cal-csrf").value;
  const T = document.getElementById("cal-texts").dataset;
  const statusEl = document.getElementById("cal-status");
  const saidEl = document.getElementById("cal-said");
  const undoButton = document.getElementById("cal-undo");
  const dialog = document.getElementById("cal-editor");
  const adDialog = document.getElementById("cal-ad-editor");
  // `music` (marketing: rules) or `ads` (sales: fixed-time ads).
  const ads = cal.dataset.mode === "ads";
  const STEP = 15;
  const DAY = 24 * 60;
  const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
  const undoStack = [];
  let shownDate = null;
  let justDragged = false;
  let lastRule = null;

  const toMin = (hhmm) => {
    const [h, m] = hhmm.split(":").map(Number);
    return h * 60 + m;
  };
  const toHhmm = (min) => {
    const m = ((min % DAY) + DAY) % DAY;
    return String(Math.floor(m / 60)).padStart(2, "0") + ":" + String(m % 60).padStart(2, "0");
  };
  const snap = (min) => Math.round(min / STEP) * STEP;
  const range = () => [Number(cal.dataset.first), Number(cal.dataset.last)];
  const vertical = () => cal.dataset.view === "week";

  // ---- Layout: blocks, shades and pins at their minutes ----

  function layout() {
    cal.classList.add("js");
    const [first, last] = range();
    const span = Math.max(last - first, 1);
    const place = (el, a, b) => {
      const from = Math.max(a, first);
      const to = Math.min(b, last);
      el.hidden = to <= from;
      const p = ((from - first) / span) * 100 + "%";
      const q = (Math.max(to - from, 0) / span) * 100 + "%";
      if (vertical()) { el.style.top = p; el.style.height = q; } else { el.style.left = p; el.style.width = q; }
    };
    for (const el of cal.querySelectorAll(".cal-block, .cal-shade")) {
      place(el, Number(el.dataset.start), Number(el.dataset.end));
    }
    for (const el of cal.querySelectorAll(".cal-pin")) {
      const m = Number(el.dataset.minute);
      place(el, m, m + 1);
      if (vertical()) el.style.height = ""; else el.style.width = "";
    }
    // Phones show one day at a time: today when it is in the week, else Monday.
    const days = Array.from(cal.querySelectorAll(".cal-week .cal-day"));
    if (days.length) {
      if (!days.some((d) => d.dataset.date === shownDate)) {
        shownDate = (days.find((d) => d.classList.contains("today")) || days[0]).dataset.date;
      }
      showDay(shownDate);
    }
  }

  function showDay(date) {
    shownDate = date;
    for (const d of cal.querySelectorAll(".cal-day")) d.classList.toggle("shown", d.dataset.date === date);
    for (const t of cal.querySelectorAll(".cal-tab")) {
      t.setAttribute("aria-selected", String(t.dataset.date === date));
      t.classList.toggle("secondary", t.dataset.date !== date);
    }
  }

  // ---- Talking to the server ----

  function say(title, lines, kind) {
    statusEl.textContent = title;
    statusEl.className = "flash " + kind;
    saidEl.replaceChildren(...(lines || []).map((l) => {
      const li = document.createElement("li");
      li.className = l.change;
      li.textContent = l.text;
      return li;
    }));
    if (lines && !lines.length) {
      const li = document.createElement("li");
      li.textContent = T.nothing;
      saidEl.append(li);
    }
  }

  async function request(url, init) {
    init.headers = Object.assign({ "x-csrf-token": csrf, accept: "application/json" }, init.headers || {});
    let response;
    try {
      response = await fetch(url, init);
    } catch (e) {
      return { ok: false, body: { error: String(e) } };
    }
    // Not JSON: the session ended (the sign-in page answered) or a proxy spoke.
    const body = await response.json().catch(() => null);
    if (body === null) {
      return { ok: false, body: { error: response.redirected ? T.signedOut : response.status + " " + response.statusText } };
    }
    return { ok: response.ok, body };
  }

  // One change at a time: a key pressed or a drag made while one is on its way
  // would act on blocks about to be redrawn, so it is ignored.
  let busy = false;

  // Sends a change; on success shows what it did, remembers its undo and redraws
  // the calendar from the server. Returns the error text when refused.
  async function send(url, init, undoing) {
    if (busy) return T.saving;
    busy = true;
    try {
      say(T.saving, null, "");
      const { ok, body } = await request(url, init);
      if (!ok) {
        say(T.refused + " " + (body.error || ""), null, "error");
        return body.error || "refused";
      }
      if (undoing) undoStack.pop(); else undoStack.push(body.undo);
      undoButton.disabled = undoStack.length === 0;
      const drawn = await redraw(body.index).then(() => true, () => false);
      say((undoing ? T.undone : T.saved) + (drawn ? "" : " " + T.reload), body.said, "ok");
      return null;
    } finally {
      busy = false;
    }
  }

  const sendEdit = (edit, undoing) => send(cal.dataset.edit, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(edit),
  }, undoing);

  // Replaces the calendar with the server's new rendering, keeping the day shown
  // and the focus on the rule that changed.
  async function redraw(index) {
    const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest(".cal-block");
    const keep = focused ? { rule: focused.dataset.rule, date: focused.dataset.date } : null;
    const response = await fetch(location.href, { headers: { accept: "text/html" } });
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById("calendar");
    if (!fresh) return;
    for (const key of ["first", "last", "new"]) cal.dataset[key] = fresh.dataset[key];
    cal.replaceChildren(...fresh.childNodes);
    const campaigns = document.getElementById("cal-campaigns");
    const freshCampaigns = doc.getElementById("cal-campaigns");
    if (campaigns && freshCampaigns) campaigns.replaceWith(freshCampaigns);
    layout();
    lastRule = index !== null && index !== undefined ? String(index) : keep && keep.rule;
    focusRule(lastRule);
  }

  // Puts the focus on a block of rule `rule`, on the day shown when it has one.
  function focusRule(rule) {
    if (rule === null || rule === undefined) return;
    const kind = ads ? ".cal-pin[data-ad" : ".cal-block[data-rule";
    const blocks = Array.from(cal.querySelectorAll(`${kind}="${rule}"]`));
    const target = blocks.find((b) => b.dataset.date === shownDate && !b.hidden) || blocks.find((b) => !b.hidden);
    if (target) target.focus();
  }

  undoButton.addEventListener("click", () => {
    const edit = undoStack[undoStack.length - 1];
    if (edit) sendEdit(edit, true);
  });

  // ---- Rules as the editor's fields ----

  const formOf = (block) => JSON.parse(block.dataset.form);
  const ruleIndex = (block) => Number(block.dataset.rule);

  const update = (block, rule) => sendEdit({ op: "update", index: ruleIndex(block), fp: block.dataset.fp, rule });
  const remove = (block) => sendEdit({ op: "delete", index: ruleIndex(block), fp: block.dataset.fp });

  // The rule moved by `days` and `minutes`, as shown: a timed window moves with
  // the block (kept inside the day unless it already runs past midnight).
  function moved(block, days, minutes) {
    const rule = formOf(block);
    if (days && rule.days.length) {
      rule.days = DAYS.filter((d) => rule.days.includes(DAYS[(DAYS.indexOf(d) - days + 7 * 8) % 7]));
    }
    if (minutes && rule.from_time) {
      const a = toMin(rule.from_time);
      let b = toMin(rule.to_time);
      if (b === 0) b = DAY;
      let d = minutes;
      if (b > a) d = Math.max(-a, Math.min(d, DAY - b));
      rule.from_time = toHhmm(a + d);
      rule.to_time = toHhmm(b + d);
    }
    return rule;
  }

  // The rule with one edge of the block at `minute`.
  function resized(block, edge, minute) {
    const rule = formOf(block);
    const start = rule.from_time ? toMin(rule.from_time) : Number(block.dataset.start);
    const end = rule.to_time ? toMin(rule.to_time) || DAY : Number(block.dataset.end);
    if (edge === "top") { rule.from_time = toHhmm(Math.min(minute, end - STEP)); rule.to_time = toHhmm(end); }
    else { rule.from_time = toHhmm(start); rule.to_time = toHhmm(Math.max(minute, start + STEP)); }
    return rule;
  }

  // ---- The editor (click, tap, Enter) ----

  let editing = null;

  function openEditor(rule, block) {
    editing = block;
    const form = dialog.querySelector("form");
    form.elements.playlist.value = rule.playlist;
    for (const box of form.querySelectorAll("input[name=shops]")) box.checked = rule.shops.includes(box.value);
    for (const box of form.querySelectorAll("input[name=days]")) box.checked = rule.days.includes(box.value);
    form.elements.from_time.value = rule.from_time;
    form.elements.to_time.value = rule.to_time;
    form.elements.date_from.value = rule.date_from;
    form.elements.date_to.value = rule.date_to;
    form.elements.priority.value = rule.priority;
    document.getElementById("ed-open-playlist").href = "/marketing/playlists/" + encodeURIComponent(rule.playlist);
    document.getElementById("ed-delete").hidden = !block;
    const error = document.getElementById("cal-editor-error");
    error.hidden = true;
    dialog.showModal();
  }

  function newRule(date, day, minute, playlist) {
    const rule = JSON.parse(cal.dataset.new);
    if (playlist) rule.playlist = playlist;
    const from = Math.min(snap(minute), DAY - STEP);
    rule.days = [day];
    rule.from_time = toHhmm(from);
    rule.to_time = toHhmm(Math.min(from + 120, DAY));
    return rule;
  }

  if (dialog) dialog.querySelector("form").addEventListener("submit", async (e) => {
    const action = e.submitter ? e.submitter.value : "save";
    if (action === "cancel") return;
    e.preventDefault();
    const form = e.target;
    const rule = {
      playlist: form.elements.playlist.value,
      shops: Array.from(form.querySelectorAll("input[name=shops]:checked")).map((b) => b.value),
      days: Array.from(form.querySelectorAll("input[name=days]:checked")).map((b) => b.value),
      from_time: form.elements.from_time.value,
      to_time: form.elements.to_time.value,
      date_from: form.elements.date_from.value,
      date_to: form.elements.date_to.value,
      priority: form.elements.priority.value,
    };
    const block = editing;
    let error;
    if (action === "delete") error = await remove(block);
    else if (block) error = await update(block, rule);
    else error = await sendEdit({ op: "create", rule });
    if (error) {
      // The dialog stays open with what was typed, and says why.
      const el = document.getElementById("cal-editor-error");
      el.textContent = error;
      el.hidden = false;
    } else {
      // Closing gives the focus back to what opened the editor: move it to the rule.
      dialog.close();
      focusRule(lastRule);
    }
  });

  // ---- Ads (sales): a fixed-time ad on a date, removed pin by pin ----

  const AD_STEP = 5;
  const createAd = (media, date, minute) => sendEdit({
    op: "create", media, shop: cal.dataset.shop, date,
    at: toHhmm(Math.min(Math.round(minute / AD_STEP) * AD_STEP, DAY - AD_STEP)),
  });
  const removeAd = (pin) => sendEdit({ op: "remove_time", index: Number(pin.dataset.ad), fp: pin.dataset.fp, at: pin.dataset.at });

  function openAdEditor(media, date, minute) {
    const form = adDialog.querySelector("form");
    if (media) form.elements.media.value = media;
    form.elements.date.value = date;
    form.elements.at.value = toHhmm(Math.round(minute / AD_STEP) * AD_STEP);
    document.getElementById("cal-ad-error").hidden = true;
    adDialog.showModal();
  }

  if (adDialog) adDialog.querySelector("form").addEventListener("submit", async (e) => {
    if (e.submitter && e.submitter.value === "cancel") return;
    e.preventDefault();
    const f = e.target.elements;
    const error = await createAd(f.media.value, f.date.value, toMin(f.at.value));
    if (error) {
      const el = document.getElementById("cal-ad-error");
      el.textContent = error;
      el.hidden = false;
    } else {
      adDialog.close();
      focusRule(lastRule);
    }
  });

  // A day column and the minute under a point (week view only).
  function slotAt(x, y) {
    if (!vertical()) return null;
    const col = document.elementsFromPoint(x, y).map((el) => el.closest(".cal-col[data-date]")).find(Boolean);
    if (!col) return null;
    const box = col.getBoundingClientRect();
    const [first, last] = range();
    const minute = first + ((y - box.top) / box.height) * (last - first);
    return { col, minute: Math.max(0, Math.min(DAY, minute)) };
  }

  cal.addEventListener("click", (e) => {
    if (justDragged) return;
    const tab = e.target.closest(".cal-tab");
    if (tab) { showDay(tab.dataset.date); return; }
    if (ads) {
      const remove = e.target.closest(".cal-pin-remove");
      if (remove) { removeAd(remove.closest(".cal-pin")); return; }
      const at = slotAt(e.clientX, e.clientY);
      if (at && !e.target.closest(".cal-pin")) openAdEditor(null, at.col.dataset.date, at.minute);
      return;
    }
    const block = e.target.closest(".cal-block[data-rule]");
    if (block) { openEditor(formOf(block), block); return; }
    // Anywhere else in a day, the fallback included: plan something there.
    const slot = slotAt(e.clientX, e.clientY);
    if (slot) openEditor(newRule(slot.col.dataset.date, slot.col.dataset.day, Math.floor(slot.minute / 60) * 60), null);
  });

  const palette = document.getElementById("cal-palette");
  palette.addEventListener("click", (e) => {
    if (ads) {
      const chip = e.target.closest("[data-media]");
      const day = cal.querySelector(`.cal-day[data-date="${shownDate}"]`) || cal.querySelector(".cal-day");
      if (chip && !justDragged && day) openAdEditor(chip.dataset.media, day.dataset.date, range()[0] + 120);
      return;
    }
    const chip = e.target.closest("[data-playlist]");
    if (!chip || justDragged) return;
    const day = cal.querySelector(`.cal-day[data-date="${shownDate}"]`) || cal.querySelector(".cal-day");
    const [first] = range();
    if (day) openEditor(newRule(day.dataset.date, day.dataset.day, first + 60, chip.dataset.playlist), null);
  });

  // ---- Keys on a focused block ----

  cal.addEventListener("keydown", (e) => {
    const pin = e.target.closest(".cal-pin[data-ad]");
    if (pin && (e.key === "Delete" || e.key === "Backspace")) { e.preventDefault(); removeAd(pin); return; }
    const block = e.target.closest(".cal-block[data-rule]");
    if (!block) return;
    let rule = null;
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openEditor(formOf(block), block); return; }
    if (e.key === "Delete" || e.key === "Backspace") { e.preventDefault(); remove(block); return; }
    if (e.key === "ArrowUp" || e.key === "ArrowDown") {
      const d = e.key === "ArrowUp" ? -STEP : STEP;
      rule = e.shiftKey ? resized(block, "bottom", Number(block.dataset.end) + d) : moved(block, 0, d);
    } else if (e.key === "ArrowLeft" || e.key === "ArrowRight") {
      const d = e.key === "ArrowLeft" ? -1 : 1;
      rule = moved(block, d, 0);
      const days = Array.from(cal.querySelectorAll(".cal-day"));
      const i = days.findIndex((x) => x.dataset.date === block.dataset.date) + d;
      if (days[i]) shownDate = days[i].dataset.date;
    }
    if (rule) { e.preventDefault(); update(block, rule); }
  });

  // ---- Pointer drag: move, resize, create from the palette ----

  let drag = null;

  function startDrag(e, kind, el) {
    if (e.button !== 0) return;
    drag = { kind, el, x: e.clientX, y: e.clientY, moved: false, pointer: e.pointerId };
    if (kind === "create") {
      const ghost = el.cloneNode(true);
      ghost.classList.add("cal-ghost");
      document.body.append(ghost);
      drag.ghost = ghost;
    } else {
      drag.home = { parent: el.parentNode, next: el.nextSibling, top: el.style.top, height: el.style.height };
      drag.col = el.closest(".cal-col");
    }
    el.setPointerCapture(e.pointerId);
  }

  cal.addEventListener("pointerdown", (e) => {
    const block = e.target.closest(".cal-block[data-rule]");
    if (!block || !vertical()) return;
    const handle = e.target.closest(".cal-handle");
    startDrag(e, handle ? (handle.classList.contains("top") ? "top" : "bottom") : "move", block);
  });
  palette.addEventListener("pointerdown", (e) => {
    const chip = e.target.closest(ads ? "[data-media]" : "[data-playlist]");
    if (chip && vertical()) startDrag(e, "create", chip);
  });

  document.addEventListener("pointermove", (e) => {
    if (!drag || e.pointerId !== drag.pointer) return;
    if (!drag.moved && Math.hypot(e.clientX - drag.x, e.clientY - drag.y) < 4) return;
    drag.moved = true;
    e.preventDefault();
    const slot = slotAt(e.clientX, e.clientY);
    if (drag.kind === "create") {
      drag.ghost.style.left = e.clientX + 8 + "px";
      drag.ghost.style.top = e.clientY + 8 + "px";
      return;
    }
    const el = drag.el;
    el.classList.add("dragging");
    const [first, last] = range();
    const span = last - first;
    const start = Number(el.dataset.start);
    const end = Number(el.dataset.end);
    const pxPerMin = drag.col.getBoundingClientRect().height / span;
    const delta = snap((e.clientY - drag.y) / pxPerMin);
    let a = start, b = end;
    if (drag.kind === "move") { a += delta; b += delta; if (slot && slot.col !== el.parentNode) slot.col.append(el); }
    else if (drag.kind === "top") a = Math.min(start + delta, end - STEP);
    else b = Math.max(end + delta, start + STEP);
    drag.result = { a, b, delta, col: el.parentNode };
    el.style.top = ((a - first) / span) * 100 + "%";
    el.style.height = ((b - a) / span) * 100 + "%";
  });

  function putBack(d) {
    if (!d.home) return;
    d.el.classList.remove("dragging");
    d.home.parent.insertBefore(d.el, d.home.next);
    d.el.style.top = d.home.top;
    d.el.style.height = d.home.height;
  }

  document.addEventListener("pointerup", async (e) => {
    const d = drag;
    if (!d || e.pointerId !== d.pointer) return;
    drag = null;
    if (d.ghost) d.ghost.remove();
    if (!d.moved) return; // a click: the click handler opens the editor
    justDragged = true;
    setTimeout(() => { justDragged = false; }, 0);
    if (d.kind === "create") {
      const slot = slotAt(e.clientX, e.clientY);
      if (slot && ads) await createAd(d.el.dataset.media, slot.col.dataset.date, slot.minute);
      else if (slot) await sendEdit({ op: "create", rule: newRule(slot.col.dataset.date, slot.col.dataset.day, slot.minute, d.el.dataset.playlist) });
      return;
    }
    const r = d.result;
    if (!r) { putBack(d); return; }
    const cols = Array.from(cal.querySelectorAll(".cal-col[data-date]"));
    const days = cols.indexOf(r.col) - cols.indexOf(d.col);
    let rule;
    if (d.kind === "move") rule = moved(d.el, days, r.delta);
    else rule = resized(d.el, d.kind, d.kind === "top" ? r.a : r.b);
    if (days) shownDate = r.col.dataset.date;
    const error = await update(d.el, rule);
    // Refused: the block goes back where it was.
    if (error) putBack(d);
  });
  document.addEventListener("pointercancel", () => { if (drag) { putBack(drag); if (drag.ghost) drag.ghost.remove(); drag = null; } });

  // ---- MP3 files from the desktop ----

  const dropFiles = (files, date, from, to) => {
    const data = new FormData();
    data.append("shop", cal.dataset.shop);
    data.append("date", date);
    data.append("from_time", from);
    data.append("to_time", to);
    for (const f of files) data.append("files", f, f.name);
    return send("/marketing/calendar/drop?csrf=" + encodeURIComponent(csrf), { method: "POST", body: data });
  };

  cal.addEventListener("dragover", (e) => {
    if (!e.dataTransfer || !Array.from(e.dataTransfer.types).includes("Files")) return;
    const slot = slotAt(e.clientX, e.clientY);
    if (!slot) return;
    e.preventDefault();
    for (const c of cal.querySelectorAll(".cal-col.over")) c.classList.remove("over");
    slot.col.classList.add("over");
  });
  cal.addEventListener("dragleave", (e) => { if (e.target.classList) e.target.classList.remove("over"); });
  cal.addEventListener("drop", (e) => {
    const slot = slotAt(e.clientX, e.clientY);
    if (!slot || !e.dataTransfer || !e.dataTransfer.files.length) return;
    e.preventDefault();
    slot.col.classList.remove("over");
    const from = Math.min(snap(slot.minute), DAY - STEP);
    dropFiles(e.dataTransfer.files, slot.col.dataset.date, toHhmm(from), toHhmm(Math.min(from + 120, DAY)));
  });
  const dropForm = document.getElementById("cal-drop-form");
  if (dropForm) {
    dropForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const f = dropForm.elements;
      dropFiles(f.files.files, f.date.value, f.from_time.value, f.to_time.value).then((error) => { if (!error) dropForm.reset(); });
    });
  }

  layout();
})();
