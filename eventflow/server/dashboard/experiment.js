// An experiment's runs: a live table (status badges, params and latest metrics as
// columns), sortable, filtered with MLflow's search grammar, runs selected to compare.
// Rows are updated in place (a box being ticked is never replaced); which columns show
// is chosen per experiment and remembered in localStorage.
import { applyExperimentEvent, experimentActions } from "./actions.js";
import { historyTab, withHistory } from "./history.js";
import { applyLatest, applyRunEvent, badge, runStatus, channel, esc, fmtDuration, fmtTime, fmtValue, runFromView, setHTML, throttled } from "./util.js";

export function experimentPage(view, experimentId) {
  const state = { runs: new Map(), experiment: null, missing: false, sort: { column: "start", asc: false }, selected: new Set(), filter: "", error: "",
                  hidden: hiddenColumns(experimentId) };
  view.innerHTML = `
    <h1 id="title">Experiment ${esc(experimentId)}</h1><div id="experiment-actions"></div>` + withHistory(`
    <div class="toolbar">
      <input id="filter" type="text" placeholder='Filter: metrics.loss < 0.5 and params.lr = "0.01" and attributes.status = "RUNNING"'>
      <button id="apply">Filter</button>
      <button id="compare" disabled>Compare selected</button>
      <button id="columns-button" type="button">Columns</button>
      <span id="count" class="muted"></span>
    </div>
    <div id="column-chooser" class="card chooser" hidden></div>
    <p id="error" class="error"></p>
    <div class="table-wrap"><table id="runs" class="runs"><thead></thead><tbody></tbody></table></div>`);
  historyTab(view, "experiment", experimentId);
  const actions = experimentActions(view.querySelector("#experiment-actions"), experimentId);
  const table = view.querySelector("#runs");
  const chooser = view.querySelector("#column-chooser");
  const rowsById = new Map(); // run id -> its <tr>, kept across renders
  let sub = null;

  function subscribe() {
    if (sub) sub.close();
    state.error = "";
    const spec = { experiment_id: experimentId };
    if (state.filter) spec.filter = state.filter;
    sub = channel.subscribe("experiment", spec, {
      snapshot(data) {
        state.experiment = data.experiment;
        state.missing = !data.experiment;
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
    if (id === "status") return badge(runStatus(run));
    if (id === "start") return esc(fmtTime(run.info.start_time));
    if (id === "duration") return esc(fmtDuration(run.info.start_time, run.info.end_time));
    return esc(fmtValue(value));
  }

  const render = throttled(() => {
    const title = view.querySelector("#title");
    if (state.missing) {
      title.textContent = `Experiment ${experimentId} not found`;
      view.querySelector("#error").textContent = `No experiment has the id ${experimentId}.`;
      view.querySelector("#error").classList.add("not-found");
      view.querySelector("#count").textContent = "";
      table.hidden = true;
      return;
    }
    table.hidden = false;
    title.textContent = state.experiment ? `Experiment: ${state.experiment.name}` : `Experiment ${experimentId}`;
    view.querySelector("#error").textContent = state.error;
    actions.update(state.experiment);
    const all = columns();
    renderChooser(all);
    const cols = all.filter((c) => c[0] === "name" || !state.hidden.has(c[0]));
    const get = (all.find((c) => c[0] === state.sort.column) || all[2])[2];
    const rows = [...state.runs.values()].sort((a, b) => {
      const x = get(a), y = get(b);
      if (x === y) return 0;
      if (x === undefined || x === null) return 1;
      if (y === undefined || y === null) return -1;
      return (x < y ? -1 : 1) * (state.sort.asc ? 1 : -1);
    });
    const fixed = cols.filter((c) => !c[0].startsWith("params.") && !c[0].startsWith("metrics."));
    const paramCols = cols.filter((c) => c[0].startsWith("params.")), metricCols = cols.filter((c) => c[0].startsWith("metrics."));
    setHTML(table.tHead,
      `<tr><th rowspan="2" class="sticky-select"></th>${fixed.map((c) => head(c, 'rowspan="2"')).join("")}` +
      (paramCols.length ? `<th colspan="${paramCols.length}">Parameters</th>` : "") + (metricCols.length ? `<th colspan="${metricCols.length}">Metrics</th>` : "") +
      `</tr><tr>${[...paramCols, ...metricCols].map((c) => head(c, "")).join("")}</tr>`);
    renderRows([...fixed, ...paramCols, ...metricCols], rows);
    view.querySelector("#count").textContent = `${rows.length} run${rows.length === 1 ? "" : "s"}`;
    view.querySelector("#compare").disabled = state.selected.size < 2;
  });

  // Each run's row is created once and its cells rewritten only where they changed.
  function renderRows(cols, rows) {
    const body = table.tBodies[0];
    const layout = cols.map((c) => c[0]).join("\n");
    const shown = new Set(rows.map((r) => r.info.run_id));
    for (const [id, tr] of rowsById) if (!shown.has(id)) { tr.remove(); rowsById.delete(id); }
    rows.forEach((r, index) => {
      const id = r.info.run_id;
      let tr = rowsById.get(id);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.run = id;
        tr.innerHTML = `<td class="sticky-select"><input type="checkbox" data-select="${esc(id)}"></td>`;
        rowsById.set(id, tr);
      }
      if (tr.__layout !== layout) {
        while (tr.cells.length > 1) tr.lastElementChild.remove();
        for (const [column] of cols) {
          const td = document.createElement("td");
          td.dataset.column = column;
          if (column === "name") td.className = "sticky-name";
          tr.appendChild(td);
        }
        tr.__layout = layout;
      }
      tr.classList.toggle("changed", Boolean(r.isNew));
      cols.forEach((c, i) => setHTML(tr.cells[i + 1], cell(c[0], r, c[2](r))));
      const box = tr.cells[0].firstElementChild;
      if (box.checked !== state.selected.has(id)) box.checked = state.selected.has(id);
      if (body.children[index] !== tr) body.insertBefore(tr, body.children[index] || null);
    });
  }

  function renderChooser(cols) {
    setHTML(chooser, `<div class="muted">Columns shown (remembered for this experiment in this browser)</div>` +
      cols.filter((c) => c[0] !== "name").map(([id, label]) =>
        `<label><input type="checkbox" data-column-toggle="${esc(id)}" ${state.hidden.has(id) ? "" : "checked"}> ${esc(id.includes(".") ? id : label)}</label>`).join(""));
  }

  function head([id, label], extra) {
    const sorted = state.sort.column === id ? `sorted ${state.sort.asc ? "asc" : ""}` : "";
    return `<th ${extra} data-sort="${esc(id)}" class="${sorted} ${id === "name" ? "sticky-name" : ""}">${esc(label)}</th>`;
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
  view.querySelector("#columns-button").onclick = () => { chooser.hidden = !chooser.hidden; };
  chooser.addEventListener("change", (e) => {
    const toggle = e.target.closest("input[data-column-toggle]");
    if (!toggle) return;
    toggle.checked ? state.hidden.delete(toggle.dataset.columnToggle) : state.hidden.add(toggle.dataset.columnToggle);
    localStorage.setItem(columnsKey(experimentId), JSON.stringify([...state.hidden]));
    render();
  });
  const apply = () => { state.filter = view.querySelector("#filter").value.trim(); subscribe(); };
  view.querySelector("#apply").onclick = apply;
  view.querySelector("#filter").onkeydown = (e) => { if (e.key === "Enter") apply(); };
  view.querySelector("#compare").onclick = () => { location.hash = `#/compare?runs=${[...state.selected].join(",")}`; };
  const ticker = setInterval(render, 1000); // running durations
  subscribe();
  return () => { clearInterval(ticker); if (sub) sub.close(); };
}

const columnsKey = (experimentId) => `eventflow.hidden-columns.${experimentId}`;

function hiddenColumns(experimentId) {
  try {
    const saved = JSON.parse(localStorage.getItem(columnsKey(experimentId)) || "[]");
    return new Set(Array.isArray(saved) ? saved.map(String) : []);
  } catch {
    return new Set(); // unreadable (edited by hand): every column shows
  }
}
