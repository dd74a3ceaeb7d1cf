// scriptd console: small enhancements; every page works without them.
// - an open confirmation window becomes modal (focus stays inside; Escape cancels);
// - Copy buttons copy the text of the element named by data-copy and say so.
"use strict";

function showMessage(text) {
  const box = document.getElementById("messages");
  if (!box) return;
  const p = document.createElement("p");
  p.className = "flash success";
  p.textContent = text;
  box.replaceChildren(p);
}

function makeModal(dialog) {
  if (!dialog.open || typeof dialog.showModal !== "function") return;
  dialog.close();
  dialog.showModal();
  const first = dialog.querySelector("[autofocus]");
  if (first) first.focus();
  dialog.addEventListener("cancel", (event) => {
    event.preventDefault();
    window.location.assign(dialog.dataset.cancel || window.location.pathname);
  });
}

async function copyFrom(button, event) {
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const text = "value" in source && source.tagName === "INPUT" ? source.value : source.innerText;
  const leaving = button.tagName === "A";
  if (leaving) event.preventDefault();
  try {
    await navigator.clipboard.writeText(text);
    showMessage("Copied to clipboard");
  } catch (error) {
    if ("select" in source) source.select();
    showMessage("Copy failed: select the text and copy it with the keyboard");
    return;
  }
  if (leaving) window.location.assign(button.getAttribute("href"));
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("dialog.dialog[open]").forEach(makeModal);
  document.querySelectorAll(".backdrop").forEach((b) => b.remove());
  document.body.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy]");
    if (button) copyFrom(button, event);
  });
});

// Resource Allocation: the CPU target means nothing when min = max replicas.
document.addEventListener("DOMContentLoaded", () => {
  const min = document.getElementById("min");
  const max = document.getElementById("max");
  const cpu = document.getElementById("cpu");
  if (!min || !max || !cpu) return;
  const sync = () => { cpu.disabled = min.value !== "" && min.value === max.value; };
  min.addEventListener("input", sync);
  max.addEventListener("input", sync);
  sync();
});
