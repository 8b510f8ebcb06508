// Compare: several runs' metrics overlaid (a bar per run for a single-value metric), a
// table of their latest values, params side by side with differences marked, and the
// params and metrics together: parallel coordinates and a scatter of any two of them.
import { chartControls } from "./charts.js";
import { chartsFor } from "./run.js";
import { applyLatest, applyRunEvent, badge, runStatus, channel, esc, fmtValue, href, link, runFromView, setHTML, throttled } from "./util.js";

const PLOT_CONFIG = { responsive: true, displaylogo: false };

// A column of values as Plotly takes it: numbers when every value is one, else categories.
function axis(values) {
  const numbers = values.map((v) => (v === undefined || v === null || v === "" ? NaN : Number(v)));
  if (numbers.every((n) => isFinite(n))) return { numeric: true, values: numbers };
  const labels = [...new Set(values.map((v) => String(v ?? "")))].sort();
  return { numeric: false, values: values.map((v) => labels.indexOf(String(v ?? ""))), labels };
}

export function comparePage(view, runIds) {
  const runs = new Map();
  const charts = new Map();
  view.innerHTML = `<h1>Compare ${runIds.length} runs</h1>
    <h2>Metrics</h2><div class="table-wrap"><table id="compare-metrics"></table></div>
    <div id="controls"></div><div id="charts" class="grid"></div>
    <h2>Parameters and metrics</h2>
    <div class="toolbar"><label>x <select id="scatter-x"></select></label><label>y <select id="scatter-y"></select></label></div>
    <div class="grid"><div id="scatter" class="chart"></div><div id="parallel" class="chart"></div></div>
    <h2>Parameters</h2><div class="table-wrap"><table id="params"></table></div>`;
  view.querySelector("#controls").appendChild(chartControls());
  const grid = view.querySelector("#charts");
  const name = (id) => { const r = runs.get(id); return r ? r.info.run_name || id : id; };
  const addPoints = (runId, key, s) => chartsFor(grid, charts, key, key, { bars: true }).add(name(runId), s.step, s.time, s.value);
  const drawn = { scatter: "", parallel: "" }; // what each plot shows: redrawn only when it changes

  const render = throttled(() => {
    const ids = runIds.filter((id) => runs.has(id));
    const header = (label) => `<thead><tr><th>${esc(label)}</th>${ids.map((id) => `<th data-run="${esc(id)}">${link(href.run(id), name(id))} ${badge(runStatus(runs.get(id)))}</th>`).join("")}</tr></thead>`;
    const params = [...new Set(ids.flatMap((id) => Object.keys(runs.get(id).params)))].sort();
    const metrics = [...new Set(ids.flatMap((id) => Object.keys(runs.get(id).metrics)))].sort();
    const paramRows = params.map((k) => {
      const values = ids.map((id) => runs.get(id).params[k]);
      const differ = new Set(values.map(String)).size > 1;
      return `<tr data-param="${esc(k)}" class="${differ ? "differs" : ""}"><td>${esc(k)}</td>${values.map((v) => `<td class="${differ ? "diff" : ""}">${esc(fmtValue(v))}</td>`).join("")}</tr>`;
    });
    setHTML(view.querySelector("#params"), `${header("Parameter")}<tbody>${paramRows.join("")}</tbody>`);
    const metricRows = metrics.map((k) => `<tr data-metric-row="${esc(k)}"><td>${esc(k)}</td>${ids.map((id) =>
      `<td data-run="${esc(id)}">${esc(fmtValue(runs.get(id).metrics[k]?.value))}</td>`).join("")}</tr>`);
    setHTML(view.querySelector("#compare-metrics"), metrics.length ? `${header("Metric")}<tbody>${metricRows.join("")}</tbody>` : "");

    const columns = [...params.map((k) => ({ id: "params." + k, label: k, get: (r) => r.params[k] })),
                     ...metrics.map((k) => ({ id: "metrics." + k, label: k, get: (r) => r.metrics[k]?.value }))];
    pickers(columns);
    scatter(ids, columns);
    parallel(ids, columns);
  });

  function pickers(columns) {
    const fill = (select, choices, preferred) => {
      const options = choices.map((c) => `<option value="${esc(c.id)}">${esc(c.id)}</option>`).join("");
      if (select.__options === options) return;
      const kept = select.value;
      select.innerHTML = options;
      select.__options = options;
      select.value = choices.some((c) => c.id === kept) ? kept : (preferred || choices[0] || {}).id || "";
    };
    fill(view.querySelector("#scatter-x"), columns, columns.find((c) => c.id.startsWith("params.")));
    fill(view.querySelector("#scatter-y"), columns.filter((c) => c.id.startsWith("metrics.")));
  }

  function scatter(ids, columns) {
    const x = columns.find((c) => c.id === view.querySelector("#scatter-x").value);
    const y = columns.find((c) => c.id === view.querySelector("#scatter-y").value);
    const box = view.querySelector("#scatter");
    if (!x || !y) return;
    const xs = axis(ids.map((id) => x.get(runs.get(id)))), ys = ids.map((id) => y.get(runs.get(id)) ?? null);
    const trace = { type: "scatter", mode: "markers+text", x: xs.numeric ? xs.values : ids.map((id) => String(x.get(runs.get(id)) ?? "")),
                    y: ys, text: ids.map(name), textposition: "top center", marker: { size: 11, color: "#2f6fde" } };
    const layout = { title: { text: `${y.label} by ${x.label}`, font: { size: 13 } }, margin: { l: 50, r: 10, t: 34, b: 40 },
                     xaxis: { title: { text: x.id }, type: xs.numeric ? "linear" : "category" }, yaxis: { title: { text: y.id } } };
    const signature = JSON.stringify([trace, layout]);
    if (signature === drawn.scatter) return;
    drawn.scatter = signature;
    Plotly.react(box, [trace], layout, PLOT_CONFIG);
  }

  function parallel(ids, columns) {
    // A dimension per param and metric every run has (parcoords draws no gaps).
    const dimensions = columns.filter((c) => ids.every((id) => c.get(runs.get(id)) !== undefined)).map((c) => {
      const a = axis(ids.map((id) => c.get(runs.get(id))));
      return a.numeric ? { label: c.label, values: a.values } : { label: c.label, values: a.values, tickvals: a.labels.map((_, i) => i), ticktext: a.labels };
    });
    if (!dimensions.length || !ids.length) return;
    const trace = { type: "parcoords", dimensions, line: { color: ids.map((_, i) => i), colorscale: "Viridis" } };
    const signature = JSON.stringify(trace);
    if (signature === drawn.parallel) return;
    drawn.parallel = signature;
    const box = view.querySelector("#parallel");
    Plotly.react(box, [trace], { margin: { l: 60, r: 60, t: 50, b: 20 } }, PLOT_CONFIG);
    box.dataset.dimensions = String(dimensions.length);
  }

  view.querySelector("#scatter-x").onchange = render;
  view.querySelector("#scatter-y").onchange = render;

  const sub = channel.subscribe("runs", { run_ids: runIds }, {
    snapshot(data) {
      runs.clear();
      for (const c of charts.values()) c.destroy();
      charts.clear();
      grid.innerHTML = "";
      // In the order the runs were chosen: legends and bars read alike on every chart.
      const ordered = data.runs.slice().sort((a, b) => runIds.indexOf(a.run.info.run_id) - runIds.indexOf(b.run.info.run_id));
      for (const r of ordered) runs.set(r.run.info.run_id, runFromView(r.run));
      for (const r of ordered) for (const [key, s] of Object.entries(r.history)) addPoints(r.run.info.run_id, key, s);
      render();
    },
    events(events, points) {
      for (const e of events) applyRunEvent(runs, e);
      for (const chunk of points) {
        applyLatest(runs, chunk);
        for (const [key, s] of Object.entries(chunk.series)) addPoints(chunk.run_id, key, s);
      }
      render();
    },
  });
  return () => {
    sub.close();
    for (const c of charts.values()) c.destroy();
    for (const id of ["#scatter", "#parallel"]) if (window.Plotly) Plotly.purge(view.querySelector(id));
  };
}
