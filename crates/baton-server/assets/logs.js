// Baton console: a device's live logs. Loading the page asks nothing; "Show live" reads the
// API's NDJSON stream (`GET /api/v1/devices/{id}/logs?follow=true&…`, the session cookie
// authenticates a GET) and shows one line per record as it comes. Pause keeps new lines aside
// (counted) until Resume; the filter hides shown lines that do not contain its text; Download
// saves the lines shown as a .log file. Stop, or leaving the page, ends the stream (the server
// then closes it on the device).
(() => {
  "use strict";
  const form = document.getElementById("logs-form");
  const view = document.getElementById("logs-view");
  const out = document.getElementById("logs-lines");
  if (!form || !view || !out) return;
  const device = form.dataset.device;
  const status = document.getElementById("logs-status");
  const pause = document.getElementById("logs-pause");
  const stop = document.getElementById("logs-stop");
  const download = document.getElementById("logs-download");
  const filter = document.getElementById("logs-filter");
  // The most lines kept on the page; older ones are dropped.
  const KEEP = 20000;

  let controller = null;
  let paused = false;
  let waiting = [];
  const say = (words) => { status.textContent = words; };
  const setState = (state) => {
    view.dataset.state = state;
    stop.disabled = state !== "live";
    pause.disabled = state !== "live" && !paused;
  };

  const text = (r) => {
    const from = r.unit || r.source;
    const prio = r.priority === undefined || r.priority === null ? "" : `[${r.priority}]`;
    return `${r.ts} ${from}${prio}: ${r.message}`;
  };
  const matches = (line) => !filter.value || line.toLowerCase().includes(filter.value.toLowerCase());
  const show = (lines) => {
    const frag = document.createDocumentFragment();
    for (const line of lines) {
      const div = document.createElement("div");
      div.className = "log-line";
      div.textContent = line;
      div.hidden = !matches(line);
      frag.append(div);
    }
    const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    out.append(frag);
    while (out.childElementCount > KEEP) out.firstElementChild.remove();
    if (atBottom) out.scrollTop = out.scrollHeight;
  };
  const take = (lines) => {
    if (paused) {
      waiting.push(...lines);
      pause.textContent = `Resume (${waiting.length} new)`;
    } else {
      show(lines);
    }
  };

  pause.addEventListener("click", () => {
    paused = !paused;
    if (paused) {
      pause.textContent = "Resume (0 new)";
      view.dataset.paused = "";
    } else {
      delete view.dataset.paused;
      pause.textContent = "Pause";
      show(waiting);
      waiting = [];
      setState(view.dataset.state);
    }
  });
  filter.addEventListener("input", () => {
    for (const div of out.children) div.hidden = !matches(div.textContent);
  });
  download.addEventListener("click", () => {
    const shown = [...out.children].filter((d) => !d.hidden).map((d) => d.textContent);
    const blob = new Blob([shown.join("\n") + (shown.length ? "\n" : "")], { type: "text/plain" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `${device}-${new Date().toISOString().replace(/[:.]/g, "-")}.log`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  });
  stop.addEventListener("click", () => {
    if (controller) controller.abort();
  });

  // Shows only the fields of the chosen source.
  const sourceChanged = () => {
    const source = form.elements.source.value;
    for (const label of form.querySelectorAll("label[data-for]")) label.hidden = label.dataset.for !== source;
  };
  form.elements.source.addEventListener("change", sourceChanged);
  sourceChanged();

  const query = () => {
    const f = form.elements;
    const q = new URLSearchParams({ source: f.source.value, follow: "true" });
    const add = (name, value) => { if (value.trim() !== "") q.set(name, value.trim()); };
    if (f.source.value === "file") {
      add("path", f.path.value);
    } else {
      add("unit", f.unit.value);
      add("priority", f.priority.value);
      add("since", f.since.value);
    }
    add("grep", f.grep.value);
    add("lines", f.lines.value);
    return q;
  };

  const read = async (res, signal) => {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let pending = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true });
      const parts = pending.split("\n");
      pending = parts.pop();
      const lines = [];
      for (const part of parts) {
        if (!part) continue;
        try { lines.push(text(JSON.parse(part))); } catch (_) { lines.push(part); }
      }
      if (lines.length) take(lines);
      if (signal.aborted) break;
    }
  };

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (controller) controller.abort();
    const mine = new AbortController();
    controller = mine;
    out.replaceChildren();
    waiting = [];
    paused = false;
    delete view.dataset.paused;
    pause.textContent = "Pause";
    setState("connecting");
    say("Asking the device…");
    let res;
    try {
      res = await fetch(`/api/v1/devices/${encodeURIComponent(device)}/logs?${query()}`, {
        headers: { accept: "application/x-ndjson" },
        signal: mine.signal,
      });
    } catch (err) {
      if (controller === mine) { setState("ended"); say(`The server cannot be reached (${err.message}).`); }
      return;
    }
    if (!res.ok) {
      let words = `${res.status} ${res.statusText}`;
      try { words = (await res.json()).detail || words; } catch (_) { /* not JSON: keep the status line */ }
      setState("ended");
      say(`No logs: ${words}`);
      return;
    }
    setState("live");
    say("Live.");
    try {
      await read(res, mine.signal);
      if (controller === mine) say("The device ended the stream.");
    } catch (err) {
      if (controller === mine) say(mine.signal.aborted ? "Stopped." : `The stream broke (${err.message}).`);
    }
    if (controller === mine) { controller = null; setState("ended"); }
  });
})();
