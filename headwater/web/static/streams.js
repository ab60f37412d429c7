// Live charts of the streams page: poll /streams/live.json every 2 s, append a point, redraw with uPlot.
(function () {
  "use strict";
  const KEEP = 150; // points kept: 5 minutes at 2 s
  const palette = ["#0f766e", "#3b82f6", "#dc3545", "#f2c744", "#7c3aed", "#f5923e"];
  const charts = {};
  let predLabels = [];
  const data = { t: [], in: [], out: [], dead: [], p50: [], p95: [], lag: [], alerts: [] };

  function make(id, series, opts) {
    const el = document.getElementById(id);
    if (!el || !window.uPlot) return null;
    const width = el.clientWidth || 500;
    const cfg = Object.assign({
      width: width, height: 200, legend: { show: true },
      scales: { x: { time: true } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] } },
      axes: [{ stroke: "#66768a", grid: { stroke: "#eef1f5" } }, { stroke: "#66768a", grid: { stroke: "#eef1f5" }, size: 56 }],
      series: [{}].concat(series.map((s, i) => Object.assign({ stroke: palette[i % palette.length], width: 2, points: { show: false } }, s))),
    }, opts || {});
    const chart = new uPlot(cfg, [[]].concat(series.map(() => [])), el);
    new ResizeObserver(() => chart.setSize({ width: el.clientWidth, height: 200 })).observe(el);
    return chart;
  }

  function bars(id) {
    // The prediction distribution: a bar per bucket (uPlot's bars path builder).
    const el = document.getElementById(id);
    if (!el || !window.uPlot) return null;
    const chart = new uPlot({
      width: el.clientWidth || 500, height: 200, legend: { show: false },
      scales: {
        x: { time: false, range: (u) => [-0.6, Math.max(u.data[0].length - 0.4, 0.6)] },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] },
      },
      axes: [
        // One tick per bar, labelled with its bucket ("≤ upper bound") or model name.
        { stroke: "#66768a", grid: { show: false }, splits: (u) => u.data[0].slice(),
          values: (u, splits) => splits.map((i) => predLabels[i] ?? "") },
        { stroke: "#66768a", grid: { stroke: "#eef1f5" }, size: 56 },
      ],
      series: [{}, { stroke: "#0f766e", fill: "rgba(15,118,110,.35)", paths: uPlot.paths.bars({ size: [0.8, 40] }), points: { show: false } }],
    }, [[], []], el);
    new ResizeObserver(() => chart.setSize({ width: el.clientWidth, height: 200 })).observe(el);
    return chart;
  }

  function push(key, value) {
    data[key].push(value);
    if (data[key].length > KEEP) data[key].shift();
  }

  async function tick() {
    let body;
    try {
      const res = await fetch("/streams/live.json", { headers: { Accept: "application/json" } });
      if (!res.ok) return;
      body = await res.json();
    } catch (e) { return; }
    const apps = Object.values(body.apps || {});
    // No running app: show the waiting note instead of empty axes (and plot nothing).
    const box = document.getElementById("stream-charts");
    if (box) box.classList.toggle("no-data", apps.length === 0 && data.t.length === 0);
    if (apps.length === 0 && data.t.length === 0) return;
    const sum = (k) => apps.reduce((a, x) => a + (x[k] || 0), 0);
    const max = (k) => apps.reduce((a, x) => Math.max(a, x[k] || 0), 0);
    push("t", body.at);
    window.hwStreamPoints = data.t.length; // how many points the charts hold (the browser test waits on it)
    push("in", sum("in")); push("out", sum("out")); push("dead", sum("dead"));
    push("p50", max("p50")); push("p95", max("p95"));
    push("lag", sum("lag")); push("alerts", sum("alerts"));
    if (charts.tp) charts.tp.setData([data.t, data.in, data.out, data.dead]);
    if (charts.lat) charts.lat.setData([data.t, data.p50, data.p95]);
    if (charts.lag) charts.lag.setData([data.t, data.lag, data.alerts]);
    const hist = apps.map((a) => a.histogram).find((h) => Array.isArray(h) && h.length);
    const note = document.getElementById("pred-note");
    if (charts.pred && hist) {
      predLabels = hist.map((b) => "≤ " + Number(b[0]).toLocaleString());
      charts.pred.setData([hist.map((_, i) => i), hist.map((b) => b[1])]);
      if (note) note.textContent = "predictions by value bucket";
    } else if (charts.pred) {
      const counts = apps.flatMap((a) => Object.entries(a.predictions || {}));
      predLabels = counts.map((c) => c[0]);
      charts.pred.setData([counts.map((_, i) => i), counts.map((c) => c[1])]);
      if (note) note.textContent = counts.length ? "scores so far by model: " + counts.map((c) => c[0]).join(", ") : "no predictions yet";
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    charts.tp = make("chart-throughput", [{ label: "in/s" }, { label: "out/s" }, { label: "dead/s", stroke: "#dc3545" }]);
    charts.lat = make("chart-latency", [{ label: "p50 s" }, { label: "p95 s" }]);
    charts.lag = make("chart-lag", [{ label: "lag" }, { label: "alerts", stroke: "#f5923e" }]);
    charts.pred = bars("chart-predictions");
    tick();
    setInterval(tick, 2000);
  });
})();
