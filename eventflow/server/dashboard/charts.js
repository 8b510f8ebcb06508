// Metric charts on Plotly (SVG for small charts, scattergl from 5,000 points: tens of
// thousands of points per series stay smooth).
// A chart holds its series' columns; new points are pushed and the chart redrawn at most
// once per animation frame, whatever the rate they arrive at.

import { fmtValue } from "./util.js";

const COLORS = ["#2f6fde", "#e4572e", "#1f8f4e", "#a05195", "#f3a712", "#17becf", "#7f7f7f", "#8c564b"];

const GL_FROM = 5000; // points in a chart from which it is drawn with WebGL

export const chartOptions = { smoothing: 0, log: false, x: "step" };
const charts = new Set();

export function setChartOption(name, value) {
  chartOptions[name] = value;
  for (const chart of charts) chart.schedule(true);
}

// Exponential moving average, debiased as TensorBoard does, so early points are not pulled to 0.
function smooth(values, weight) {
  const out = new Array(values.length);
  let last = 0, count = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || !isFinite(v)) { out[i] = v; continue; }
    last = last * weight + (1 - weight) * v;
    count += 1;
    out[i] = last / (1 - Math.pow(weight, count));
  }
  return out;
}

export class MetricChart {
  // bars: with several series of one point each (runs compared on a single value), a bar per series.
  constructor(element, title, { bars = false } = {}) {
    this.element = element;
    this.title = title;
    this.bars = bars;
    this.series = new Map(); // name -> {step: [], time: [], value: [], trace}
    this.data = []; // the traces Plotly draws (element.data holds the same objects)
    this.revision = 0;
    this.pending = false;
    this.drawn = false;
    charts.add(this);
  }

  destroy() { charts.delete(this); if (window.Plotly) Plotly.purge(this.element); }

  add(name, steps, times, values) {
    let s = this.series.get(name);
    if (!s) {
      const color = COLORS[this.series.size % COLORS.length];
      s = { step: [], time: [], value: [], color };
      this.series.set(name, s);
    }
    for (let i = 0; i < steps.length; i++) {
      s.step.push(steps[i]); s.time.push(times[i]); s.value.push(values[i]);
    }
    this.schedule(false);
  }

  schedule(rebuild) {
    if (rebuild) this.rebuild = true;
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }

  xs(s) {
    if (chartOptions.x === "time") return s.time.map((t) => new Date(t));
    if (chartOptions.x === "relative") { const t0 = s.time.length ? Math.min(...s.time.slice(0, 1000)) : 0; return s.time.map((t) => (t - t0) / 1000); }
    return s.step.slice();
  }

  singleValued() { return [...this.series.values()].every((s) => s.value.length <= 1); }

  drawBars() {
    const named = [...this.series].filter(([, s]) => s.value.length === 1);
    const traces = [{ type: "bar", x: named.map(([name]) => name), y: named.map(([, s]) => s.value[0]),
                      marker: { color: named.map(([, s]) => s.color) }, text: named.map(([, s]) => fmtValue(s.value[0])), hoverinfo: "x+y" }];
    this.data = traces;
    Plotly.react(this.element, traces, {
      title: { text: this.title, font: { size: 13 } }, margin: { l: 50, r: 10, t: 34, b: 60 }, datarevision: ++this.revision,
      showlegend: false, xaxis: { type: "category" }, yaxis: { type: chartOptions.log ? "log" : "linear" },
    }, { responsive: true, displaylogo: false });
    this.element.dataset.kind = "bar";
    this.element.dataset.points = String(this.points());
  }

  draw() {
    if (this.bars && this.series.size > 1 && this.singleValued()) return this.drawBars();
    this.element.dataset.kind = "line";
    // SVG draws a few thousand points cheaply; beyond that WebGL (scattergl) keeps it smooth.
    const type = this.points() > GL_FROM ? "scattergl" : "scatter";
    // Points arrive in log order, which is mostly step order; sort where they are not.
    const traces = [];
    for (const [name, s] of this.series) {
      const order = [...s.step.keys()];
      let sorted = true;
      for (let i = 1; i < s.step.length; i++) if (s.step[i] < s.step[i - 1]) { sorted = false; break; }
      if (!sorted) {
        order.sort((a, b) => s.step[a] - s.step[b] || s.time[a] - s.time[b]);
        for (const key of ["step", "time", "value"]) s[key] = order.map((i) => s[key][i]);
      }
      // A line through one point is invisible: a single value is a marker.
      const mode = s.value.length === 1 ? "markers" : "lines";
      const raw = { name, type, mode, x: this.xs(s), y: s.value.slice(), line: { color: s.color, width: 1.5 }, marker: { color: s.color, size: 9 } };
      if (chartOptions.smoothing > 0) {
        raw.opacity = 0.25; raw.showlegend = false; raw.hoverinfo = "skip";
        traces.push(raw, { name, type, mode: "lines", x: raw.x, y: smooth(s.value, chartOptions.smoothing), line: { color: s.color, width: 2 } });
      } else {
        traces.push(raw);
      }
    }
    this.data = traces;
    const layout = {
      title: { text: this.title, font: { size: 13 } },
      margin: { l: 50, r: 10, t: 34, b: 36 },
      datarevision: ++this.revision,
      uirevision: "keep", // keep the user's zoom while points arrive
      showlegend: this.series.size > 1,
      legend: { orientation: "h", y: -0.2 },
      xaxis: { title: { text: { step: "step", time: "time", relative: "seconds" }[chartOptions.x] }, type: chartOptions.x === "time" ? "date" : "linear" },
      yaxis: { type: chartOptions.log ? "log" : "linear" },
    };
    Plotly.react(this.element, traces, layout, { responsive: true, displaylogo: false });
    this.element.dataset.points = String(this.points());
  }

  points() { let n = 0; for (const s of this.series.values()) n += s.step.length; return n; }
}

// Controls shared by every chart on a page: smoothing, log scale, x axis.
export function chartControls() {
  const box = document.createElement("div");
  box.className = "toolbar";
  box.innerHTML = `
    <label>Smoothing <input id="smoothing" type="range" min="0" max="0.99" step="0.01" value="${chartOptions.smoothing}"></label>
    <label><input id="logscale" type="checkbox" ${chartOptions.log ? "checked" : ""}> log scale</label>
    <label>x axis <select id="xaxis">
      <option value="step">step</option><option value="relative">relative time</option><option value="time">wall time</option>
    </select></label>
    <span class="muted">drag to zoom, double-click to reset</span>`;
  box.querySelector("#xaxis").value = chartOptions.x;
  box.querySelector("#smoothing").oninput = (e) => setChartOption("smoothing", Number(e.target.value));
  box.querySelector("#logscale").onchange = (e) => setChartOption("log", e.target.checked);
  box.querySelector("#xaxis").onchange = (e) => setChartOption("x", e.target.value);
  return box;
}
