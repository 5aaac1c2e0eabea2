// Skycast web UI: the little behaviour plain HTML cannot give. Every page works
// without it; it adds drag-and-drop (uploads, playlist order) on top.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Drop files onto a .dropzone: they go into its form's file input.
  for (const zone of document.querySelectorAll(".dropzone")) {
    const input = zone.querySelector("input[type=file]");
    if (!input) continue;
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      input.files = e.dataTransfer.files;
      const list = zone.querySelector(".chosen");
      if (list) list.textContent = Array.from(input.files).map((f) => f.name).join(", ");
    });
  }

  // Reorder the items of an ol.sortable by dragging; hidden inputs keep the order
  // the form submits.
  for (const list of document.querySelectorAll("ol.sortable")) {
    let dragged = null;
    for (const item of list.children) {
      item.draggable = true;
      item.addEventListener("dragstart", () => { dragged = item; item.classList.add("dragging"); });
      item.addEventListener("dragend", () => { item.classList.remove("dragging"); dragged = null; });
      item.addEventListener("dragover", (e) => {
        e.preventDefault();
        if (!dragged || dragged === item) return;
        const box = item.getBoundingClientRect();
        const after = e.clientY > box.top + box.height / 2;
        list.insertBefore(dragged, after ? item.nextSibling : item);
      });
    }
  }

  // Buttons with data-confirm ask before their form is sent.
  for (const button of document.querySelectorAll("[data-confirm]")) {
    button.addEventListener("click", (e) => {
      if (!window.confirm(button.dataset.confirm)) e.preventDefault();
    });
  }
});
