// Skycast supervision pages: live updates without reload. Every 2 s it reads
// the dashboard's own page as JSON, /api/fleet/page?<the table's data-query>
// (at most 100 players, with the summary and their latest commands), or one
// player's /api/fleet/players/<id>; it rewrites the summary counts and the row
// cells marked data-field, in the page's language (the texts come from the
// table's data-texts), and shows a notice when the rows the page should show
// changed. The page works without it: filters, page links and buttons are
// plain links and forms.
"use strict";

(() => {
  const table = document.getElementById("fleet-table");
  if (!table) return;
  const texts = JSON.parse(table.dataset.texts || "{}");
  const lang = document.documentElement.lang;
  const onePlayer = table.dataset.player || "";
  const query = table.dataset.query || "";
  const t = (key) => (key in texts ? texts[key] : key);
  const EVERY_MS = 2000;

  // The same wording as the server's (web/fleet.rs: age, offset, bytes, clock_time).
  const age = (s) => (s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min` : s < 86400 ? `${Math.floor(s / 3600)} h` : `${Math.floor(s / 86400)} d`);
  const sign = (n) => (n < 0 ? "-" : "+");
  const offset = (ms) => (Math.abs(ms) < 1000 ? `${sign(ms)}${Math.abs(ms)} ms` : `${sign(ms)}${(Math.abs(ms) / 1000).toFixed(1)} s`);
  const bytes = (n) => (n < 1e6 ? `${Math.floor(n / 1000)} kB` : n < 1e9 ? `${Math.floor(n / 1e6)} MB` : `${(n / 1e9).toFixed(1)} GB`);
  const clockTime = (text) => {
    const d = new Date(text);
    if (Number.isNaN(d.getTime())) return text;
    const two = (n) => String(n).padStart(2, "0");
    return `${two(d.getUTCHours())}:${two(d.getUTCMinutes())} UTC`;
  };
  const stateOf = (p) => (p.disabled ? "disabled" : p.up ? "up" : "ko");
  const syncText = (p) => {
    if (p.disabled || p.active_version === null) return t("fleet.sync.unknown");
    if (p.in_sync) return t("fleet.sync.in_sync");
    return t("fleet.sync.behind").replace("{n}", p.behind_by).replace("{since}", p.behind_since ? clockTime(p.behind_since) : "");
  };
  const commandText = (c) => `${t("fleet.command." + c.kind)}: ${t("fleet.command_state." + c.state)} ${clockTime(c.done_at || c.requested_at)}`;

  const setText = (row, field, value) => {
    const cell = row.querySelector(`[data-field="${field}"]`);
    if (cell && cell.textContent !== value) cell.textContent = value;
    return cell;
  };

  function updateRow(row, p, command) {
    const state = stateOf(p);
    row.dataset.state = state;
    row.dataset.inSync = String(p.in_sync);
    const badge = setText(row, "state", t("fleet.state." + state));
    if (badge) badge.className = `badge ${state}`;
    setText(row, "sync", syncText(p));
    setText(row, "now_playing", p.now_playing ? p.now_playing.title : "—");
    setText(row, "activity", t("fleet.activity." + p.activity));
    setText(row, "output", t("fleet.output." + p.output));
    setText(row, "last_seen", p.last_report_age_secs === null ? t("fleet.never") : t("fleet.ago").replace("{age}", age(p.last_report_age_secs)));
    setText(row, "clock", p.clock_offset_ms === null ? "—" : offset(p.clock_offset_ms));
    setText(row, "disk", p.free_disk_bytes === null ? "—" : bytes(p.free_disk_bytes));
    const alerts = row.querySelector('[data-field="alerts"]');
    if (alerts) {
      const words = p.open_alerts.map((a) => (lang === "fr" ? a.text_fr : a.text_en));
      const now = Array.from(alerts.querySelectorAll(".badge")).map((b) => b.textContent);
      if (words.join("\n") !== now.join("\n")) {
        alerts.replaceChildren();
        for (const w of words) {
          const b = document.createElement("span");
          b.className = "badge warn";
          b.dataset.test = "alert";
          b.textContent = w;
          alerts.append(b, " ");
        }
      }
    }
    if (command) setText(row, "command", commandText(command));
  }

  function updateSummary(summary) {
    for (const cell of document.querySelectorAll("#fleet-summary [data-summary]")) {
      const n = summary[cell.dataset.summary];
      if (n !== undefined && cell.textContent !== String(n)) cell.textContent = String(n);
    }
  }

  function updateCommands(commands) {
    const body = document.querySelector("#commands-table tbody");
    if (!body) return;
    for (const c of commands) {
      let row = Array.from(body.rows).find((r) => r.dataset.command === c.id);
      if (!row) {
        row = body.insertRow(0);
        row.dataset.test = "command-row";
        row.dataset.command = c.id;
        for (const value of [t("fleet.command." + c.kind), "", c.requested_by, c.requested_at, ""]) {
          row.insertCell().textContent = value;
        }
        row.cells[1].dataset.field = "command-state";
        row.cells[4].dataset.field = "command-done";
        const none = document.getElementById("no-commands");
        if (none) none.hidden = true;
      }
      row.dataset.state = c.state;
      setText(row, "command-state", t("fleet.command_state." + c.state));
      setText(row, "command-done", c.done_at || "—");
    }
  }

  async function json(url) {
    const resp = await fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } });
    if (!resp.ok || !(resp.headers.get("content-type") || "").includes("json")) throw new Error(`${url}: ${resp.status}`);
    return resp.json();
  }

  async function poll() {
    try {
      let players;
      let commands;
      if (onePlayer) {
        const detail = await json(`/api/fleet/players/${encodeURIComponent(onePlayer)}`);
        players = [detail.player];
        commands = detail.commands;
        updateCommands(commands);
      } else {
        const page = await json(`/api/fleet/page?${query}`);
        players = page.players;
        commands = page.commands;
        updateSummary(page.summary);
        const head = document.getElementById("head-version");
        if (head) head.textContent = `v${page.head_version}`;
      }
      const shownRows = Array.from(table.tBodies[0].rows);
      const rows = new Map(shownRows.map((r) => [r.dataset.player, r]));
      for (const p of players) {
        const row = rows.get(p.id);
        if (row) updateRow(row, p, commands.find((c) => c.player_id === p.id));
      }
      // The server's order is the page's: another order or set asks for a reload.
      const changed = shownRows.map((r) => r.dataset.player).join("\n") !== players.map((p) => p.id).join("\n");
      const notice = document.getElementById("fleet-new");
      if (notice) notice.hidden = !changed;
      const updated = document.getElementById("fleet-updated");
      if (updated) updated.textContent = `${t("fleet.updated")} ${new Date().toLocaleTimeString(lang)}`;
      table.dataset.updates = String(Number(table.dataset.updates || 0) + 1);
    } catch (e) {
      // Signed out, or the server is restarting: try again at the next turn.
    } finally {
      window.setTimeout(poll, EVERY_MS);
    }
  }

  window.setTimeout(poll, EVERY_MS);
})();
