// Small helpers shared by the pages.
import { LiveChannel } from "./live.js";

export const channel = new LiveChannel();

export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

export function fmtTime(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  return d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " + d.toLocaleTimeString();
}

export function fmtDuration(start, end) {
  if (!start) return "";
  let s = Math.max(0, Math.round(((end || Date.now()) - start) / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  s = s % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`;
}

export function fmtValue(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Math.abs(v) >= 1e5 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : String(Math.round(v * 1e4) / 1e4);
  return String(v);
}

// The dashboard's page of each kind of entity (one place, so every page links alike).
export const href = {
  run: (id) => `#/runs/${encodeURIComponent(id)}`,
  experiment: (id) => `#/experiments/${encodeURIComponent(id)}`,
  model: (name) => `#/models/${encodeURIComponent(name)}`,
  version: (name, version) => `#/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(version)}`,
};

export function link(url, text, attrs = "") {
  return `<a href="${esc(url)}" ${attrs}>${esc(text)}</a>`;
}

export async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(body.message || `${response.status} ${response.statusText}`), { status: response.status });
  return body;
}

export function badge(status) {
  return `<span class="badge ${esc(status)}" data-status="${esc(status)}">${esc(status)}</span>`;
}

// What the dashboard calls a run: MLflow's status, but CRASHED for a FAILED run the watchdog
// found dead and STALLED for a RUNNING one without new metrics (their tags say so).
export function runStatus(run) {
  const tags = run.tags || {};
  if (run.info.status === "FAILED" && "eventflow.crashed" in tags) return "CRASHED";
  if (run.info.status === "RUNNING" && "eventflow.stalled" in tags) return "STALLED";
  return run.info.status;
}

// Replace an element's content only when it changed: no relayout of the page (and its
// charts) for every frame of points.
export function setHTML(element, html) {
  if (element.__html !== html) { element.innerHTML = html; element.__html = html; }
}

// Once per animation frame, whatever the number of calls.
export function throttled(fn) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; fn(); });
  };
}

// -- runs as the pages hold them, updated by events ---------------------------------------

export function runFromView(run) {
  const toObject = (list) => Object.fromEntries((list || []).map((x) => [x.key, x.value]));
  const metrics = {};
  for (const m of run.data.metrics || []) metrics[m.key] = { value: m.value, step: m.step, timestamp: m.timestamp };
  return { info: { ...run.info }, params: toObject(run.data.params), tags: toObject(run.data.tags), metrics };
}

const ENDED = { "run.finished": "FINISHED", "run.failed": "FAILED", "run.killed": "KILLED" };

// Apply one event to a Map of runs; returns the run id it touched (or null). A deleted run
// leaves the Map, unless ``keepDeleted`` (the run's own page, which can restore it).
export function applyRunEvent(runs, entry, keepDeleted = false) {
  const event = entry.event, p = event.payload, type = event.type;
  if (type === "run.created") {
    const tags = Object.fromEntries((p.tags || []).map((t) => [t.key, t.value]));
    runs.set(p.run_id, {
      info: { run_id: p.run_id, experiment_id: p.experiment_id, run_name: p.run_name, user_id: p.user_id, status: "RUNNING",
              start_time: p.start_time || event.time, artifact_uri: p.artifact_uri, lifecycle_stage: "active" },
      params: {}, tags, metrics: {}, isNew: true,
    });
    return p.run_id;
  }
  const run = runs.get(p.run_id);
  if (!run) return null;
  if (ENDED[type]) { run.info.status = ENDED[type]; run.info.end_time = p.end_time || event.time; delete run.tags["eventflow.crashed"]; delete run.tags["eventflow.stalled"]; }
  else if (type === "run.params_logged") for (const x of p.params) run.params[x.key] = x.value;
  else if (type === "run.tags_set") for (const x of p.tags) { run.tags[x.key] = x.value; if (x.key === "mlflow.runName") run.info.run_name = x.value; }
  else if (type === "run.tag_deleted") delete run.tags[p.key];
  else if (type === "run.renamed") run.info.run_name = p.run_name;
  else if (type === "run.crashed") { run.info.status = "FAILED"; run.info.end_time = p.last_seen_time; run.tags["eventflow.crashed"] = String(p.last_seen_time); }
  else if (type === "run.alive" && "eventflow.crashed" in run.tags) { run.info.status = "RUNNING"; run.info.end_time = null; delete run.tags["eventflow.crashed"]; }
  else if (type === "run.stalled" && run.info.status === "RUNNING") run.tags["eventflow.stalled"] = String(p.last_step_time);
  else if (type === "run.stall_ended") delete run.tags["eventflow.stalled"];
  else if (type === "run.stop_requested") run.stopRequest = { actor: event.actor, reason: p.reason, time: event.time };
  else if (type === "run.deleted") keepDeleted ? (run.info.lifecycle_stage = "deleted") : runs.delete(p.run_id);
  else if (type === "run.restored") run.info.lifecycle_stage = "active";
  return p.run_id;
}

// Metric points (a chunk of the protocol): keep the latest value per key, as MLflow ranks it.
export function applyLatest(runs, chunk) {
  const run = runs.get(chunk.run_id);
  if (!run) return;
  for (const [key, s] of Object.entries(chunk.series)) {
    for (let i = 0; i < s.step.length; i++) {
      const known = run.metrics[key];
      if (!known || s.step[i] > known.step || (s.step[i] === known.step && s.time[i] >= known.timestamp)) {
        run.metrics[key] = { value: s.value[i], step: s.step[i], timestamp: s.time[i] };
      }
    }
  }
}
