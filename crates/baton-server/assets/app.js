// Baton console: the CSRF header on every htmx request, live refreshes from the server's event
// stream, and times shown relative and in the viewer's time zone. No framework; htmx does the rest.
(() => {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]');

  document.body.addEventListener("htmx:configRequest", (e) => {
    if (csrf) e.detail.headers["x-csrf-token"] = csrf.content;
  });

  // Server-Sent Events: any event of the tenant asks the live parts of the page to refresh,
  // at most twice a second.
  let pending = null;
  const changed = () => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      document.body.dispatchEvent(new CustomEvent("baton:changed"));
    }, 500);
  };
  if (csrf && window.EventSource) {
    const stream = new EventSource("/api/v1/events/stream");
    stream.addEventListener("event", changed);
  }

  // Rollouts move without device events: a page that shows them names their stream in
  // `data-rollout-stream`, followed (and switched or closed) as htmx swaps pages in and out.
  let rollouts = null;
  const followRollouts = () => {
    const named = document.querySelector("[data-rollout-stream]")?.dataset.rolloutStream;
    const url = named && new URL(named, location.href).href;
    if (rollouts?.url === url) return;
    rollouts?.close();
    rollouts = null;
    if (!url || !csrf || !window.EventSource) return;
    rollouts = new EventSource(url);
    rollouts.addEventListener("rollout", changed);
  };
  followRollouts();
  document.body.addEventListener("htmx:afterSettle", followRollouts);

  // An error shown at the top of `near` (a form or a section), in place of the previous one;
  // no words: the error is gone. Also used by chart.js.
  const say = (near, words) => {
    let alert = near.querySelector(":scope > [role=alert]");
    if (!words) { alert?.remove(); return; }
    if (!alert) {
      alert = document.createElement("p");
      alert.setAttribute("role", "alert");
      alert.className = "error";
      near.prepend(alert);
    }
    alert.textContent = words;
  };
  window.batonSay = say;

  // Field errors (problem+json `errors`) next to their fields: each message goes to the holder
  // in the form whose `data-error-for` is the longest prefix of its JSON pointer, and the field
  // that holder describes is marked invalid. No errors: the holders are emptied.
  const sayByField = (form, errors) => {
    if (!form) return;
    const holders = [...form.querySelectorAll("[data-error-for]")];
    for (const h of holders) h.textContent = "";
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    for (const { field, message } of errors ?? []) {
      const fits = holders.filter((h) => field === h.dataset.errorFor || field.startsWith(`${h.dataset.errorFor}/`));
      const holder = fits.sort((a, b) => b.dataset.errorFor.length - a.dataset.errorFor.length)[0];
      if (!holder) continue;
      holder.textContent = holder.textContent ? `${holder.textContent}; ${message}` : message;
      form.querySelector(`[aria-describedby~="${holder.id}"]`)?.setAttribute("aria-invalid", "true");
    }
  };

  // A refused change is answered in place, in the server's words (problem+json `detail`).
  document.body.addEventListener("htmx:responseError", (e) => {
    const xhr = e.detail.xhr;
    let words = `${xhr.status} ${xhr.statusText}`;
    let errors = [];
    try {
      const problem = JSON.parse(xhr.responseText);
      if (problem.detail) words = problem.detail;
      if (Array.isArray(problem.errors)) errors = problem.errors;
    } catch (_) { /* not JSON: keep the status line */ }
    say(e.detail.elt.closest("form, section") || document.querySelector("main"), words);
    sayByField(e.detail.elt.closest("form"), errors);
  });
  document.body.addEventListener("htmx:afterRequest", (e) => {
    if (!e.detail.successful) return;
    const form = e.detail.elt.closest("form");
    form?.querySelector(":scope > [role=alert]")?.remove();
    sayByField(form, []);
    // A form that adds one thing at a time is emptied for the next.
    if (form?.hasAttribute("data-reset-on-success")) form.reset();
  });

  // A file input with `data-fill` puts the chosen (text) file into the named field.
  document.body.addEventListener("change", (e) => {
    const input = e.target.closest?.("input[type=file][data-fill]");
    const target = input && document.querySelector(input.dataset.fill);
    if (!target || !input.files[0]) return;
    input.files[0].text().then((text) => { target.value = text; });
  });

  // Copy buttons: `data-copy` names the element whose text to copy.
  document.body.addEventListener("click", (e) => {
    const button = e.target.closest("[data-copy]");
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    if (source && navigator.clipboard) {
      navigator.clipboard.writeText(source.textContent.trim()).then(() => { button.textContent = "Copied"; }, () => {});
    }
  });

  // Picking devices for a bulk action: the count, the buttons enabled only with a selection,
  // "select all on this page", and the picks kept when the live list is redrawn.
  const picked = new Set();
  const syncPicks = () => {
    const bulk = document.getElementById("bulk");
    if (!bulk) return;
    const boxes = [...document.querySelectorAll('input[name="device"][form="bulk"]')];
    const present = new Set(boxes.map((b) => b.value));
    for (const id of [...picked]) if (!present.has(id)) picked.delete(id);
    for (const b of boxes) b.checked = picked.has(b.value);
    const all = document.getElementById("pick-all");
    if (all) all.checked = boxes.length > 0 && boxes.every((b) => b.checked);
    bulk.querySelector("[data-testid=selected-count]").textContent = String(picked.size);
    for (const button of bulk.querySelectorAll("button")) button.disabled = picked.size === 0;
  };
  document.body.addEventListener("change", (e) => {
    const box = e.target;
    if (box.id === "pick-all") {
      for (const b of document.querySelectorAll('input[name="device"][form="bulk"]')) {
        if (box.checked) picked.add(b.value); else picked.delete(b.value);
      }
    } else if (box.matches?.('input[name="device"][form="bulk"]')) {
      if (box.checked) picked.add(box.value); else picked.delete(box.value);
    } else {
      return;
    }
    syncPicks();
  });
  document.body.addEventListener("htmx:afterSettle", syncPicks);
  document.body.addEventListener("htmx:afterRequest", (e) => {
    if (e.detail.successful && e.detail.elt.closest("#bulk")) { picked.clear(); syncPicks(); }
  });
  syncPicks();

  const units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
  const format = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const relative = (root) => {
    for (const el of root.querySelectorAll("time[datetime]")) {
      const at = new Date(el.getAttribute("datetime"));
      if (isNaN(at)) continue;
      const secs = Math.round((at - Date.now()) / 1000);
      const [unit, size] = units.find(([, s]) => Math.abs(secs) >= s) || ["second", 1];
      el.textContent = format.format(Math.round(secs / size), unit);
      el.title = at.toLocaleString();
    }
  };
  relative(document);
  document.body.addEventListener("htmx:afterSwap", (e) => relative(e.target));
  setInterval(() => relative(document), 30000);
})();
