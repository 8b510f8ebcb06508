// A rerun's page: the link to the run it reran and its reproducibility report
// (reproducibility.json, written by `eventflow rerun`). An original's page: its reruns.
import { badge, esc, fmtValue } from "./util.js";

const RERUN_OF = "eventflow.rerun_of";
const REPORT = "reproducibility.json";

function same(flag) {
  return `<span class="${flag ? "same" : "diff"}">${flag ? "same" : "differs"}</span>`;
}

function short(value) {
  if (value === null || value === undefined) return "(none)";
  const text = String(value);
  return /^[0-9a-f]{40,64}$/.test(text) ? text.slice(0, 12) : text;
}

function inputDetail(item) {
  if (item.differences) return item.differences.map((d) => `${esc(d.key ?? d.name)}: ${esc(short(d.original))} → ${esc(short(d.rerun))}`).join("<br>");
  return item.same ? esc(short(item.rerun)) : `${esc(short(item.original))} → ${esc(short(item.rerun))}`;
}

export function reportHTML(report) {
  const inputs = Object.entries(report.inputs).map(([name, item]) =>
    `<tr data-input="${esc(name)}" data-same="${item.same}"><td>${esc(name)}</td><td>${same(item.same)}</td><td>${inputDetail(item)}</td></tr>`).join("");
  const metrics = report.metrics.map((m) =>
    `<tr data-metric="${esc(m.key)}" data-same="${m.same}"><td>${esc(m.key)}</td><td>${same(m.same)}</td><td>${esc(fmtValue(m.original_final))}</td>
      <td>${esc(fmtValue(m.rerun_final))}</td><td>${m.steps_differing ? esc(fmtValue(m.max_abs_difference)) + (m.at_step !== null ? ` at step ${esc(m.at_step)}` : "") : ""}</td></tr>`).join("");
  const artifacts = report.artifacts.map((a) =>
    `<tr data-artifact="${esc(a.path)}" data-same="${a.same}"><td>${esc(a.path)}</td><td>${same(a.same)}</td>
      <td>${esc(short(a.original_sha256))}</td><td>${esc(short(a.rerun_sha256))}</td></tr>`).join("");
  return `<p class="verdict">Inputs <b>${report.inputs_identical ? "identical" : "different"}</b>,
      outputs <b>${report.outputs_identical ? "identical" : "different"}</b>.</p>
    <table class="kv"><thead><tr><th>Input</th><th></th><th>Value</th></tr></thead><tbody>${inputs}</tbody></table>
    <table><thead><tr><th>Metric</th><th></th><th>Original final</th><th>Rerun final</th><th>Largest difference</th></tr></thead>
      <tbody>${metrics || `<tr><td colspan="5" class="muted">No metrics.</td></tr>`}</tbody></table>
    <table><thead><tr><th>Artifact</th><th></th><th>Original sha256</th><th>Rerun sha256</th></tr></thead>
      <tbody>${artifacts || `<tr><td colspan="4" class="muted">No artifacts.</td></tr>`}</tbody></table>`;
}

// The lineage box of a run page; `update(run)` after each render, `artifactLogged(path)` on
// each run.artifact_logged (the report arrives as one, just before the rerun ends).
export function lineage(box, runId, downloadUrl) {
  let reportState = "none"; // none | loading | missing (not written yet) | shown
  let rerunsAsked = false;
  let reruns = [];
  let report = null;

  function draw(run) {
    const original = run.tags[RERUN_OF];
    let html = "";
    if (original) {
      html += `<p id="rerun-of">Rerun of <a href="#/runs/${esc(original)}">${esc(original)}</a></p>
        <h2>Reproducibility</h2><div id="reproducibility" class="card" data-loaded="${report !== null}">${
          report ? reportHTML(report) : run.info.status === "RUNNING" || reportState === "loading"
            ? `<span class="muted">The report is written when the rerun's command ends.</span>`
            : `<span class="muted">No ${REPORT} was logged on this run (code that ends its run itself, as MLflow code does, freezes its files first): <code>eventflow rerun</code> printed it.</span>`}</div>`;
    }
    if (reruns.length) {
      html += `<p id="reruns">Reruns: ${reruns.map((r) => `<a href="#/runs/${esc(r.info.run_id)}">${esc(r.info.run_name || r.info.run_id)}</a> ${badge(r.info.status)}`).join(" · ")}</p>`;
    }
    if (box.__html !== html) { box.innerHTML = html; box.__html = html; }
  }

  async function loadReport(run) {
    reportState = "loading";
    try {
      const response = await fetch(downloadUrl(REPORT));
      if (response.ok) { report = await response.json(); reportState = "shown"; } else reportState = "missing";
    } catch (error) { reportState = "missing"; }
    draw(run);
  }

  async function loadReruns(run) {
    rerunsAsked = true;
    const body = { experiment_ids: [run.info.experiment_id], filter: `tags.\`${RERUN_OF}\` = '${runId.replace(/'/g, "")}'`, max_results: 100 };
    const answer = await fetch("/api/2.0/mlflow/runs/search", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })
      .then((r) => r.json()).catch(() => ({}));
    reruns = answer.runs || [];
    draw(run);
  }

  let last = null;
  return {
    update(run) {
      last = run;
      if (run.tags[RERUN_OF] && reportState === "none") loadReport(run);
      if (!rerunsAsked) loadReruns(run);
      draw(run);
    },
    artifactLogged(path) {
      if (path === REPORT && last && reportState !== "shown") loadReport(last);
    },
  };
}
