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
  if (csrf && window.EventSource) {
    let pending = null;
    const changed = () => {
      if (pending) return;
      pending = setTimeout(() => {
        pending = null;
        document.body.dispatchEvent(new CustomEvent("baton:changed"));
      }, 500);
    };
    const stream = new EventSource("/api/v1/events/stream");
    stream.addEventListener("event", changed);
  }

  // A refused change is answered in place, in the server's words (problem+json `detail`).
  document.body.addEventListener("htmx:responseError", (e) => {
    const xhr = e.detail.xhr;
    let words = `${xhr.status} ${xhr.statusText}`;
    try {
      const problem = JSON.parse(xhr.responseText);
      if (problem.detail) words = problem.detail;
    } catch (_) { /* not JSON: keep the status line */ }
    const near = e.detail.elt.closest("form, section") || document.querySelector("main");
    let alert = near.querySelector(":scope > [role=alert]");
    if (!alert) {
      alert = document.createElement("p");
      alert.setAttribute("role", "alert");
      alert.className = "error";
      near.prepend(alert);
    }
    alert.textContent = words;
  });
  document.body.addEventListener("htmx:afterRequest", (e) => {
    if (e.detail.successful) e.detail.elt.closest("form")?.querySelector(":scope > [role=alert]")?.remove();
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
