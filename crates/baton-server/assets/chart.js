// Baton console: a device's telemetry chart (uPlot). It fetches a metric's buckets from the API
// for the chosen range, draws them in the viewer's time zone, and follows the device's live
// telemetry stream: new samples redraw the chart (at most every few seconds) and ask the page's
// live part to refresh its latest values.
(() => {
  "use strict";
  const box = document.getElementById("chart");
  const select = document.getElementById("chart-metric");
  if (!box || !select || !window.uPlot) return;
  const device = box.dataset.device;
  const empty = document.getElementById("chart-empty");
  const card = box.closest("section");
  // Range (seconds) → bucket width (seconds): a few hundred points at most.
  const buckets = { 3600: 30, 86400: 300, 604800: 1800 };
  let range = 3600;
  let plot = null;
  let seq = 0;

  const problem = (words) => window.batonSay(card, words);

  const draw = (metric, from, to, data) => {
    const width = Math.max(box.clientWidth, 280);
    if (plot && plot.series[1].label === metric) {
      plot.setData(data, false);
      plot.setScale("x", { min: from, max: to });
      return;
    }
    plot?.destroy();
    plot = new uPlot({
      width, height: 260,
      scales: { x: { time: true, range: () => [from, to] } },
      series: [{}, { label: metric, stroke: "#1f5fbf", fill: "rgba(31,95,191,.08)", width: 2 }],
      legend: { live: true },
    }, data, box);
  };

  const load = async () => {
    const metric = select.value;
    if (!metric) return;
    const mine = ++seq;
    const to = Math.ceil(Date.now() / 1000);
    const from = to - range;
    const params = new URLSearchParams({
      metric,
      from: new Date(from * 1000).toISOString(),
      to: new Date(to * 1000).toISOString(),
      bucket_secs: String(buckets[range]),
      agg: "avg",
    });
    let series;
    try {
      const res = await fetch(`/api/v1/devices/${encodeURIComponent(device)}/telemetry?${params}`, { headers: { accept: "application/json" } });
      const body = await res.json();
      if (!res.ok) { problem(body.detail || `${res.status} ${res.statusText}`); return; }
      series = body;
    } catch (e) {
      problem(`The chart could not be loaded: ${e.message}. Check the connection and choose the range again.`);
      return;
    }
    if (mine !== seq) return; // a newer request has been made meanwhile
    problem(null);
    const xs = series.points.map((p) => Date.parse(p.ts) / 1000);
    const ys = series.points.map((p) => p.value);
    empty.hidden = xs.length > 0;
    box.dataset.points = String(xs.length);
    box.dataset.metric = metric;
    box.dataset.range = String(range);
    draw(metric, from, to, [xs, ys]);
  };

  select.addEventListener("change", load);
  for (const button of card.querySelectorAll("[data-range]")) {
    button.addEventListener("click", () => {
      range = Number(button.dataset.range);
      for (const b of card.querySelectorAll("[data-range]")) b.setAttribute("aria-pressed", String(b === button));
      load();
    });
  }
  new ResizeObserver(() => {
    if (plot && Math.abs(plot.width - box.clientWidth) > 8) plot.setSize({ width: Math.max(box.clientWidth, 280), height: 260 });
  }).observe(box);

  // Live: the device's telemetry as it arrives.
  if (window.EventSource) {
    let redraw = null;
    let refresh = null;
    const stream = new EventSource(`/api/v1/telemetry/stream?device=${encodeURIComponent(device)}`);
    stream.addEventListener("telemetry", (e) => {
      let sample;
      try { sample = JSON.parse(e.data); } catch (_) { return; }
      for (const name of Object.keys(sample.metrics || {})) {
        if (![...select.options].some((o) => o.value === name)) select.add(new Option(name, name));
      }
      if (!select.value && select.options.length) select.selectedIndex = 0;
      // The last hour is cheap to read again; a day or a week is read again at most once a
      // minute, where one new sample hardly shows anyway.
      if (!redraw && (sample.metrics || {})[select.value] !== undefined) {
        redraw = setTimeout(() => { redraw = null; load(); }, range <= 3600 ? 2000 : 60000);
      }
      if (!refresh) {
        refresh = setTimeout(() => { refresh = null; document.body.dispatchEvent(new CustomEvent("baton:telemetry")); }, 2000);
      }
    });
    window.addEventListener("pagehide", () => stream.close());
  }
  load();
})();
