// An experiment's runs: a live table (status badges, params and latest metrics as
// columns), sortable, filtered with MLflow's search grammar, runs selected to compare.
import { applyExperimentEvent, experimentActions } from "./actions.js";
import { historyTab, withHistory } from "./history.js";
import { applyLatest, applyRunEvent, badge, channel, esc, fmtDuration, fmtTime, fmtValue, runFromView, setHTML, throttled } from "./util.js";

export function experimentPage(view, experimentId) {
  const state = { runs: new Map(), experiment: null, sort: { column: "start", asc: false }, selected: new Set(), filter: "", error: "" };
  view.innerHTML = `
    <h1 id="title">Experiment ${esc(experimentId)}</h1><div id="experiment-actions"></div>` + withHistory(`
    <div class="toolbar">
      <input id="filter" type="text" placeholder='Filter: metrics.loss < 0.5 and params.lr = "0.01" and attributes.status = "RUNNING"'>
      <button id="apply">Filter</button>
      <button id="compare" disabled>Compare selected</button>
      <span id="count" class="muted"></span>
    </div>
    <p id="error" class="error"></p>
    <div class="table-wrap"><table id="runs"></table></div>`);
  historyTab(view, "experiment", experimentId);
  const actions = experimentActions(view.querySelector("#experiment-actions"), experimentId);
  const table = view.querySelector("#runs");
  let sub = null;

  function subscribe() {
    if (sub) sub.close();
    state.error = "";
    const spec = { experiment_id: experimentId };
    if (state.filter) spec.filter = state.filter;
    sub = channel.subscribe("experiment", spec, {
      snapshot(data) {
        state.experiment = data.experiment;
        state.runs = new Map(data.runs.map((r) => [r.info.run_id, runFromView(r)]));
        render();
      },
      events(events, points) {
        for (const e of events) { applyRunEvent(state.runs, e); applyExperimentEvent(state.experiment, e); }
        for (const chunk of points) applyLatest(state.runs, chunk);
        render();
      },
      error(message) { state.error = message; state.runs = new Map(); render(); },
    });
  }

  const columns = () => {
    const params = new Set(), metrics = new Set();
    for (const r of state.runs.values()) { Object.keys(r.params).forEach((k) => params.add(k)); Object.keys(r.metrics).forEach((k) => metrics.add(k)); }
    return [
      ["name", "Run", (r) => r.info.run_name],
      ["status", "Status", (r) => r.info.status],
      ["start", "Started", (r) => r.info.start_time],
      ["duration", "Duration", (r) => (r.info.end_time || Date.now()) - r.info.start_time],
      ["user", "User", (r) => r.info.user_id],
      ["source", "Source", (r) => (r.tags["mlflow.source.name"] || "").split("/").pop()],
      ...[...params].sort().map((k) => ["params." + k, k, (r) => r.params[k]]),
      ...[...metrics].sort().map((k) => ["metrics." + k, k, (r) => r.metrics[k] && r.metrics[k].value]),
    ];
  };

  function cell(id, run, value) {
    if (id === "name") return `<a href="#/runs/${esc(run.info.run_id)}">${esc(run.info.run_name || run.info.run_id)}</a>`;
    if (id === "status") return badge(run.info.status);
    if (id === "start") return esc(fmtTime(run.info.start_time));
    if (id === "duration") return esc(fmtDuration(run.info.start_time, run.info.end_time));
    return esc(fmtValue(value));
  }

  const render = throttled(() => {
    view.querySelector("#title").textContent = state.experiment ? `Experiment: ${state.experiment.name}` : `Experiment ${experimentId}`;
    view.querySelector("#error").textContent = state.error;
    actions.update(state.experiment);
    const cols = columns();
    const get = (cols.find((c) => c[0] === state.sort.column) || cols[2])[2];
    const rows = [...state.runs.values()].sort((a, b) => {
      const x = get(a), y = get(b);
      if (x === y) return 0;
      if (x === undefined || x === null) return 1;
      if (y === undefined || y === null) return -1;
      return (x < y ? -1 : 1) * (state.sort.asc ? 1 : -1);
    });
    const paramCount = cols.filter((c) => c[0].startsWith("params.")).length;
    const metricCount = cols.filter((c) => c[0].startsWith("metrics.")).length;
    setHTML(table,
      `<thead><tr><th rowspan="2"></th>${cols.slice(0, 6).map((c) => head(c, 'rowspan="2"')).join("")}` +
      (paramCount ? `<th colspan="${paramCount}">Parameters</th>` : "") + (metricCount ? `<th colspan="${metricCount}">Metrics</th>` : "") +
      `</tr><tr>${cols.slice(6).map((c) => head(c, "")).join("")}</tr></thead><tbody>` +
      rows.map((r) => `<tr data-run="${esc(r.info.run_id)}" class="${r.isNew ? "changed" : ""}">
        <td><input type="checkbox" data-select="${esc(r.info.run_id)}" ${state.selected.has(r.info.run_id) ? "checked" : ""}></td>
        ${cols.map((c) => `<td data-column="${esc(c[0])}">${cell(c[0], r, c[2](r))}</td>`).join("")}</tr>`).join("") + "</tbody>");
    view.querySelector("#count").textContent = `${rows.length} run${rows.length === 1 ? "" : "s"}`;
    view.querySelector("#compare").disabled = state.selected.size < 2;
  });

  function head([id, label], extra) {
    const sorted = state.sort.column === id ? `sorted ${state.sort.asc ? "asc" : ""}` : "";
    return `<th ${extra} data-sort="${esc(id)}" class="${sorted}">${esc(label)}</th>`;
  }

  table.addEventListener("click", (e) => {
    const th = e.target.closest("th[data-sort]");
    if (th) {
      const column = th.dataset.sort;
      state.sort = { column, asc: state.sort.column === column ? !state.sort.asc : true };
      render();
    }
    const box = e.target.closest("input[data-select]");
    if (box) { box.checked ? state.selected.add(box.dataset.select) : state.selected.delete(box.dataset.select); render(); }
  });
  const apply = () => { state.filter = view.querySelector("#filter").value.trim(); subscribe(); };
  view.querySelector("#apply").onclick = apply;
  view.querySelector("#filter").onkeydown = (e) => { if (e.key === "Enter") apply(); };
  view.querySelector("#compare").onclick = () => { location.hash = `#/compare?runs=${[...state.selected].join(",")}`; };
  const ticker = setInterval(render, 1000); // running durations
  subscribe();
  return () => { clearInterval(ticker); if (sub) sub.close(); };
}
