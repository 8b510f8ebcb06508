// A run: live charts of every metric, params, tags, environment and artifacts.
// Compare: several runs' metrics overlaid, params side by side with differences marked.
import { runActions } from "./actions.js";
import { chartControls, MetricChart } from "./charts.js";
import { lineageGraph } from "./graph.js";
import { historyTab, withHistory } from "./history.js";
import { lineage } from "./reproducibility.js";
import { applyRunEvent, badge, channel, esc, fmtDuration, fmtTime, fmtValue, runFromView, setHTML, throttled } from "./util.js";

const ENVIRONMENT = [
  ["mlflow.source.git.commit", "git commit"], ["mlflow.source.git.branch", "git branch"], ["mlflow.source.git.repoURL", "repository"],
  ["eventflow.git.dirty", "uncommitted changes"], ["mlflow.source.name", "source"], ["eventflow.command", "command"],
  ["eventflow.python", "python"], ["eventflow.platform", "platform"], ["eventflow.host", "host"], ["mlflow.user", "user"],
];

function chartsFor(grid, charts, key, title) {
  let chart = charts.get(key);
  if (!chart) {
    const box = document.createElement("div");
    box.className = "chart";
    box.id = "chart-" + key.replace(/[^A-Za-z0-9_-]/g, "_");
    box.dataset.metric = key;
    [...grid.children].find((c) => c.dataset.metric > key) ? grid.insertBefore(box, [...grid.children].find((c) => c.dataset.metric > key)) : grid.appendChild(box);
    chart = new MetricChart(box, title);
    charts.set(key, chart);
  }
  return chart;
}

function table(rows, empty) {
  if (!rows.length) return `<p class="muted">${esc(empty)}</p>`;
  return `<table class="kv">${rows.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join("")}</table>`;
}

export function runPage(view, runId) {
  const runs = new Map();
  const charts = new Map();
  view.innerHTML = `
    <h1><span id="run-name">Run ${esc(runId)}</span> <span id="status"></span></h1>
    <p id="summary" class="muted"></p><div id="run-actions"></div>` + withHistory(`
    <div id="lineage"></div>
    <h2>Metrics</h2><div id="controls"></div><div id="charts" class="grid"></div>
    <div class="cols">
      <div><h2>Parameters</h2><div id="params"></div><h2>Tags</h2><div id="tags"></div></div>
      <div><h2>Environment</h2><div id="environment"></div>
        <h2>Artifacts</h2><div id="artifacts" class="card"></div><div id="preview"></div></div>
    </div>
    <h2>Lineage</h2><div id="lineage-graph"></div>`);
  historyTab(view, "run", runId);
  const actions = runActions(view.querySelector("#run-actions"), runId);
  lineageGraph(view.querySelector("#lineage-graph"), `runs:/${runId}`);
  view.querySelector("#controls").appendChild(chartControls());
  const grid = view.querySelector("#charts");
  const links = lineage(view.querySelector("#lineage"), runId, (path) => downloadUrl(path));

  const render = throttled(() => {
    const run = runs.get(runId);
    if (!run) { view.querySelector("#summary").textContent = "No such run (yet)."; return; }
    const i = run.info;
    view.querySelector("#run-name").textContent = i.run_name || i.run_id;
    setHTML(view.querySelector("#status"), badge(i.status));
    setHTML(view.querySelector("#summary"), `${esc(i.run_id)} · experiment <a href="#/experiments/${esc(i.experiment_id)}">${esc(i.experiment_id)}</a>
      · started ${esc(fmtTime(i.start_time))} · ${esc(fmtDuration(i.start_time, i.end_time))} · by ${esc(i.user_id)}`);
    setHTML(view.querySelector("#params"), table(Object.entries(run.params).sort(), "No parameters."));
    setHTML(view.querySelector("#tags"), table(Object.entries(run.tags).filter(([k]) => !k.startsWith("mlflow.") && !k.startsWith("eventflow.")).sort(), "No tags."));
    setHTML(view.querySelector("#environment"), table(ENVIRONMENT.filter(([k]) => run.tags[k]).map(([k, label]) => [label, run.tags[k]]), "Not recorded.") +
      `<p><a href="#" id="packages">installed packages</a></p>`);
    view.querySelector("#packages").onclick = (e) => { e.preventDefault(); preview("environment/requirements.txt"); };
    links.update(run);
    actions.update(run);
  });

  const sub = channel.subscribe("runs", { run_ids: [runId] }, {
    snapshot(data) {
      runs.clear();
      for (const c of charts.values()) c.destroy();
      charts.clear();
      grid.innerHTML = "";
      for (const r of data.runs) {
        runs.set(r.run.info.run_id, runFromView(r.run));
        for (const [key, s] of Object.entries(r.history)) chartsFor(grid, charts, key, key).add(key, s.step, s.time, s.value);
      }
      render();
      listArtifacts("");
    },
    events(events, points) {
      for (const e of events) {
        applyRunEvent(runs, e, true);
        if (e.event.type === "run.artifact_logged") { listArtifacts(currentDir); links.artifactLogged(e.event.payload.path); }
      }
      for (const chunk of points) for (const [key, s] of Object.entries(chunk.series)) chartsFor(grid, charts, key, key).add(key, s.step, s.time, s.value);
      render();
    },
  });

  let currentDir = "";
  async function listArtifacts(path) {
    currentDir = path;
    const box = view.querySelector("#artifacts");
    const answer = await fetch(`/api/2.0/mlflow/artifacts/list?run_id=${encodeURIComponent(runId)}&path=${encodeURIComponent(path)}`).then((r) => r.json());
    const files = answer.files || [];
    const up = path ? `<div><a href="#" data-dir="${esc(path.split("/").slice(0, -1).join("/"))}">..</a></div>` : "";
    box.innerHTML = up + (files.length ? files.map((f) => f.is_dir
      ? `<div>[dir] <a href="#" data-dir="${esc(f.path)}">${esc(f.path.split("/").pop())}/</a></div>`
      : `<div><a href="#" data-file="${esc(f.path)}">${esc(f.path.split("/").pop())}</a> <span class="muted">${f.file_size ?? ""} B</span>
         <a href="${esc(downloadUrl(f.path))}" download>download</a></div>`).join("") : `<span class="muted">No artifacts${path ? " here" : ""}.</span>`);
    box.onclick = (e) => {
      const a = e.target.closest("a[data-dir], a[data-file]");
      if (!a) return;
      e.preventDefault();
      a.dataset.dir !== undefined ? listArtifacts(a.dataset.dir) : preview(a.dataset.file);
    };
  }

  function downloadUrl(path) {
    const run = runs.get(runId);
    const base = (run ? run.info.artifact_uri : "").replace(/^mlflow-artifacts:\/?/, "").replace(/^\/+|\/+$/g, "");
    return `/api/2.0/mlflow-artifacts/artifacts/${base}/${path}`.replace(/\/+/g, "/");
  }

  async function preview(path) {
    const box = view.querySelector("#preview");
    const url = downloadUrl(path);
    if (/\.(png|jpe?g|gif|svg|webp)$/i.test(path)) { box.innerHTML = `<h2>${esc(path)}</h2><img class="preview" src="${esc(url)}">`; return; }
    const response = await fetch(url);
    const text = response.ok ? await response.text() : `(${response.status})`;
    box.innerHTML = `<h2>${esc(path)}</h2><pre class="preview">${esc(text.slice(0, 200000))}</pre>`;
  }

  const ticker = setInterval(render, 1000);
  return () => { clearInterval(ticker); sub.close(); for (const c of charts.values()) c.destroy(); };
}

export function comparePage(view, runIds) {
  const runs = new Map();
  const charts = new Map();
  view.innerHTML = `<h1>Compare ${runIds.length} runs</h1>
    <h2>Metrics</h2><div id="controls"></div><div id="charts" class="grid"></div>
    <h2>Parameters</h2><div class="table-wrap"><table id="params"></table></div>`;
  view.querySelector("#controls").appendChild(chartControls());
  const grid = view.querySelector("#charts");
  const name = (id) => { const r = runs.get(id); return r ? r.info.run_name || id : id; };

  const render = throttled(() => {
    const ids = runIds.filter((id) => runs.has(id));
    const keys = [...new Set(ids.flatMap((id) => Object.keys(runs.get(id).params)))].sort();
    const rows = keys.map((k) => {
      const values = ids.map((id) => runs.get(id).params[k]);
      const differ = new Set(values.map(String)).size > 1;
      return `<tr data-param="${esc(k)}" class="${differ ? "differs" : ""}"><td>${esc(k)}</td>${values.map((v) => `<td class="${differ ? "diff" : ""}">${esc(fmtValue(v))}</td>`).join("")}</tr>`;
    });
    setHTML(view.querySelector("#params"), `<thead><tr><th>Parameter</th>${ids.map((id) => `<th><a href="#/runs/${esc(id)}">${esc(name(id))}</a> ${badge(runs.get(id).info.status)}</th>`).join("")}</tr></thead><tbody>${rows.join("")}</tbody>`);
  });

  const sub = channel.subscribe("runs", { run_ids: runIds }, {
    snapshot(data) {
      runs.clear();
      for (const c of charts.values()) c.destroy();
      charts.clear();
      grid.innerHTML = "";
      for (const r of data.runs) runs.set(r.run.info.run_id, runFromView(r.run));
      for (const r of data.runs) for (const [key, s] of Object.entries(r.history)) chartsFor(grid, charts, key, key).add(name(r.run.info.run_id), s.step, s.time, s.value);
      render();
    },
    events(events, points) {
      for (const e of events) applyRunEvent(runs, e);
      for (const chunk of points) for (const [key, s] of Object.entries(chunk.series)) chartsFor(grid, charts, key, key).add(name(chunk.run_id), s.step, s.time, s.value);
      render();
    },
  });
  return () => { sub.close(); for (const c of charts.values()) c.destroy(); };
}
