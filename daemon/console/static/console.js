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

// General Details: the version list shows the chosen base language's versions only
// (without JavaScript all are listed, grouped by language, and the server checks).
function filterVersions() {
  const language = document.getElementById("language");
  const version = document.getElementById("version");
  if (!language || !version) return;
  const sync = () => {
    version.querySelectorAll("[data-language]").forEach((item) => {
      const other = item.dataset.language !== language.value;
      item.hidden = other;
      item.disabled = other;
    });
    const chosen = version.selectedOptions[0];
    if (chosen && chosen.disabled) version.value = "";
  };
  language.addEventListener("change", sync);
  sync();
}

// Uploads (the project file, an account file): sent with XMLHttpRequest so a
// progress bar can follow them; the answer's page replaces this one's content.
function sendWithProgress(form, event) {
  const box = form.querySelector(".upload-progress");
  if (!box || typeof XMLHttpRequest === "undefined") return;
  event.preventDefault();
  const bar = box.querySelector("progress");
  const text = box.querySelector(".progress-text");
  const buttons = form.querySelectorAll("button");
  box.hidden = false;
  buttons.forEach((b) => { b.disabled = true; });
  const xhr = new XMLHttpRequest();
  xhr.open("POST", form.action);
  xhr.upload.addEventListener("progress", (e) => {
    if (!e.lengthComputable) return;
    const percent = Math.floor((100 * e.loaded) / e.total);
    bar.value = percent;
    text.textContent = `${percent} % of ${(e.total / 1048576).toFixed(1)} MiB`;
  });
  xhr.upload.addEventListener("load", () => {
    bar.value = 100;
    text.textContent = "100 %: uploaded, checking";
  });
  xhr.addEventListener("load", () => showAnswer(xhr));
  xhr.addEventListener("error", () => {
    buttons.forEach((b) => { b.disabled = false; });
    text.textContent = "The upload failed: the connection was lost. Try again.";
  });
  xhr.send(new FormData(form));
}

function showAnswer(xhr) {
  const page = new DOMParser().parseFromString(xhr.responseText, "text/html");
  const main = page.getElementById("main");
  if (!main) {
    window.location.assign(xhr.responseURL || window.location.href);
    return;
  }
  document.title = page.title;
  document.getElementById("main").replaceChildren(...main.childNodes);
  if (xhr.responseURL && xhr.responseURL !== window.location.href) {
    window.history.pushState(null, "", xhr.responseURL);
  }
  enhance();
  const first = document.querySelector("#main [autofocus]") || document.querySelector("#main h1");
  if (first) {
    if (!first.hasAttribute("tabindex")) first.setAttribute("tabindex", "-1");
    first.focus();
  }
}

function enhance() {
  document.querySelectorAll("dialog.dialog[open]").forEach(makeModal);
  document.querySelectorAll(".backdrop").forEach((b) => b.remove());
  filterVersions();
}

window.addEventListener("popstate", () => window.location.reload());
document.addEventListener("DOMContentLoaded", () => {
  filterVersions();
  document.body.addEventListener("submit", (event) => {
    const form = event.target.closest("form[data-progress]");
    if (form) sendWithProgress(form, event);
  });
});

// Runtime Settings: a value whose Secret box is ticked is hidden as it is typed
// (without JavaScript it shows until the page comes back from the server, masked).
document.addEventListener("DOMContentLoaded", () => {
  document.body.addEventListener("change", (event) => {
    const box = event.target.closest("table.env input[type=checkbox]");
    const value = box && box.closest("tr").querySelector("input[name=env_value]");
    if (value) value.type = box.checked ? "password" : "text";
  });
});
