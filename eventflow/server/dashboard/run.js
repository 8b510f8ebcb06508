// A run: live charts of every metric and a table of their values, params, tags,
// environment and artifacts.
import { runActions } from "./actions.js";
import { chartControls, MetricChart } from "./charts.js";
import { lineageGraph } from "./graph.js";
import { historyTab, withHistory } from "./history.js";
import { runMetricsTable } from "./metrics.js";
import { lineage } from "./reproducibility.js";
import { applyRunEvent, badge, runStatus, channel, esc, fmtDuration, fmtTime, fmtValue, runFromView, setHTML, throttled } from "./util.js";

const ENVIRONMENT = [
  ["mlflow.source.git.commit", "git commit"], ["mlflow.source.git.branch", "git branch"], ["mlflow.source.git.repoURL", "repository"],
  ["eventflow.git.dirty", "uncommitted changes"], ["mlflow.source.name", "source"], ["eventflow.command", "command"],
  ["eventflow.python", "python"], ["eventflow.platform", "platform"], ["eventflow.host", "host"], ["mlflow.user", "user"],
];

export function chartsFor(grid, charts, key, title, options = {}) {
  let chart = charts.get(key);
  if (!chart) {
    const box = document.createElement("div");
    box.className = "chart";
    box.id = "chart-" + key.replace(/[^A-Za-z0-9_-]/g, "_");
    box.dataset.metric = key;
    [...grid.children].find((c) => c.dataset.metric > key) ? grid.insertBefore(box, [...grid.children].find((c) => c.dataset.metric > key)) : grid.appendChild(box);
    chart = new MetricChart(box, title, options);
    charts.set(key, chart);
  }
  return chart;
}

function table(rows, empty) {
  if (!rows.length) return `<p class="muted">${esc(empty)}</p>`;
  return `<table class="kv">${rows.map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`).join("")}</table>`;
}

const PREVIEW_CHARS = 100000; // a bigger text artifact is cut here, with a link to the whole file

// artifactPath: an artifact to open at once (MLflow's #/experiments/…/runs/…/artifacts/PATH).
export function runPage(view, runId, artifactPath = "") {
  const runs = new Map();
  let missing = false;
  const charts = new Map();
  view.innerHTML = `
    <h1><span id="run-name">Run ${esc(runId)}</span> <span id="status"></span></h1>
    <p id="summary" class="muted"></p><div id="run-actions"></div>` + withHistory(`
    <div id="lineage"></div>
    <h2>Metrics</h2><div class="table-wrap"><table id="metrics-table"></table></div>
    <div id="controls"></div><div id="charts" class="grid"></div>
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
    if (!run) {
      const summary = view.querySelector("#summary");
      summary.textContent = missing ? `Run ${runId} not found.` : "Loading…";
      summary.className = missing ? "error not-found" : "muted";
      return;
    }
    const i = run.info;
    view.querySelector("#run-name").textContent = i.run_name || i.run_id;
    setHTML(view.querySelector("#status"), badge(runStatus(run)));
    setHTML(view.querySelector("#summary"), `${esc(i.run_id)} · experiment <a href="#/experiments/${esc(i.experiment_id)}">${esc(i.experiment_id)}</a>
      · started ${esc(fmtTime(i.start_time))} · ${esc(fmtDuration(i.start_time, i.end_time))} · by ${esc(i.user_id)}`);
    setHTML(view.querySelector("#params"), table(Object.entries(run.params).sort(), "No parameters."));
    setHTML(view.querySelector("#tags"), table(Object.entries(run.tags).filter(([k]) => !k.startsWith("mlflow.") && !k.startsWith("eventflow.")).sort(), "No tags."));
    setHTML(view.querySelector("#environment"), table(ENVIRONMENT.filter(([k]) => run.tags[k]).map(([k, label]) => [label, run.tags[k]]), "Not recorded.") +
      `<p><a href="#" id="packages">installed packages</a></p>`);
    view.querySelector("#packages").onclick = (e) => { e.preventDefault(); preview("environment/requirements.txt"); };
    links.update(run);
    runMetricsTable(view.querySelector("#metrics-table"), [...charts].map(([key, chart]) => [key, chart.series.get(key)]));
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
      missing = !runs.has(runId);
      render();
      if (missing) return;
      const opened = artifactPath.replace(/\/+$/, "");
      listArtifacts(opened.split("/").slice(0, -1).join("/"));
      if (opened) preview(opened);
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
    const title = `<h2>${esc(path)}</h2>`;
    if (/\.(png|jpe?g|gif|svg|webp)$/i.test(path)) { box.innerHTML = `${title}<img class="preview" src="${esc(url)}">`; return; }
    const response = await fetch(url);
    if (!response.ok) { box.innerHTML = `${title}<p class="error">(${response.status})</p>`; return; }
    const { text, cut } = await readAtMost(response, PREVIEW_CHARS);
    if (/\.html?$/i.test(path) && !cut) {
      // Rendered, but sandboxed: no scripts, and an opaque origin (no cookies, no API calls as the user).
      box.innerHTML = `${title}<iframe class="preview" sandbox="" title="${esc(path)}"></iframe>`;
      box.querySelector("iframe").srcdoc = text;
      return;
    }
    box.innerHTML = `${title}<pre class="preview">${esc(text)}</pre>` + (cut
      ? `<p class="truncated muted">Showing the first ${text.length.toLocaleString()} characters: <a href="${esc(url)}" download>download the whole file</a></p>` : "");
  }

  const ticker = setInterval(render, 1000);
  return () => { clearInterval(ticker); sub.close(); for (const c of charts.values()) c.destroy(); };
}

// A response's text, no more than `limit` characters of it (the rest is not downloaded).
async function readAtMost(response, limit) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { text: text + decoder.decode(), cut: false };
    text += decoder.decode(value, { stream: true });
    if (text.length > limit) { reader.cancel(); return { text: text.slice(0, limit), cut: true }; }
  }
}
