// The jobs page: each job's schedule, triggers and next run, and the history of its runs
// with links to them; read again as job events arrive on the live channel.
import { channel, esc, fmtTime, getJSON, href, link, throttled } from "./util.js";

const BASE = "/api/2.0/eventflow/jobs";

function when(job) {
  const parts = [];
  if (job.cron) parts.push(`cron <code>${esc(job.cron)}</code> ${esc(job.timezone)}`);
  if (job.on_events.length) {
    let on = `on ${job.on_events.map(esc).join(", ")}`;
    if (job.model_name) on += ` · model ${esc(job.model_name)}`;
    if (job.alias) on += ` · alias ${esc(job.alias)}`;
    if (job.condition) on += ` · if ${esc(job.condition)}`;
    parts.push(on);
  }
  return parts.join("<br>") || `<span class="muted">run-now only</span>`;
}

function jobsTable(jobs) {
  if (!jobs.length) return `<p class="muted">No jobs yet: <code>eventflow jobs add NAME PROJECT_URI --cron '0 3 * * *'</code></p>`;
  return `<table id="jobs"><thead><tr><th>Job</th><th>Project</th><th>Schedule and triggers</th><th>Next run</th><th>State</th></tr></thead><tbody>` +
    jobs.map((j) => `<tr data-job="${esc(j.job_id)}"><td>${esc(j.name)}<div class="muted">${esc(j.job_id)}</div></td>
      <td>${esc(j.project_uri)} <span class="muted">-e ${esc(j.entry_point)}</span></td><td>${when(j)}</td>
      <td data-next-run>${j.next_run ? esc(fmtTime(j.next_run)) : `<span class="muted">—</span>`}</td>
      <td data-state>${j.paused ? "paused" : "active"}</td></tr>`).join("") + `</tbody></table>`;
}

function historyTable(runs, names) {
  if (!runs.length) return `<p class="muted">No runs yet.</p>`;
  return `<table id="job-runs"><thead><tr><th>Triggered</th><th>Job</th><th>By</th><th>Status</th><th>Attempt</th><th>Run</th><th>Detail</th></tr></thead><tbody>` +
    runs.map((r) => `<tr data-trigger="${esc(r.trigger_id)}" data-status="${esc(r.status)}"><td>${esc(fmtTime(r.triggered_time))}</td>
      <td>${esc(names.get(r.job_id) || r.job_id)}</td>
      <td>${esc(r.reason)}${r.cause_event_id ? ` <span class="muted">event ${esc(r.cause_event_id)}</span>` : ""}${r.tick ? ` <span class="muted">tick ${esc(fmtTime(r.tick))}</span>` : ""}</td>
      <td>${esc(r.status)}</td><td>${r.attempt}</td>
      <td>${r.run_id ? link(href.run(r.run_id), r.run_id, 'data-link="run"') : ""}</td>
      <td class="muted">${esc(r.detail || (r.exit_code != null ? `exit code ${r.exit_code}` : ""))}</td></tr>`).join("") + `</tbody></table>`;
}

export function jobsPage(view) {
  view.innerHTML = `<h1>Jobs</h1><div id="jobs-list"></div><h2>History</h2><div id="history"></div>`;
  let generation = 0, again = null;
  const load = throttled(async () => {
    const mine = ++generation;
    try {
      const { jobs } = await getJSON(BASE);
      const histories = await Promise.all(jobs.map((j) => getJSON(`${BASE}/${encodeURIComponent(j.job_id)}/runs?max_results=50`)));
      if (mine !== generation) return;
      const runs = histories.flatMap((h) => h.runs).sort((a, b) => b.triggered_time - a.triggered_time).slice(0, 200);
      view.querySelector("#jobs-list").innerHTML = jobsTable(jobs);
      view.querySelector("#history").innerHTML = historyTable(runs, new Map(jobs.map((j) => [j.job_id, j.name])));
      // An event reaches the live channel as it reaches the log, the views a moment later:
      // while a run is under way, read again shortly so its last change is never missed.
      clearTimeout(again);
      if (runs.some((r) => ["PENDING", "CLAIMED", "RUNNING"].includes(r.status))) again = setTimeout(load, 1500);
    } catch (error) {
      if (mine === generation) view.querySelector("#jobs-list").innerHTML = `<p class="error">${esc(error.message)}</p>`;
    }
  });
  // Every job event (a new job, a trigger, a claim, an end) redraws from the jobs API.
  const sub = channel.subscribe("events", { types: ["job.*"] }, { snapshot() { load(); }, events() { load(); } });
  return () => { clearTimeout(again); generation++; sub.close(); };
}
