// The experiments list, the models page and the activity feed.
import { channel, esc, fmtTime, getJSON, href, link, throttled } from "./util.js";

export function experimentsPage(view) {
  let experiments = new Map();
  view.innerHTML = `<h1>Experiments</h1><table id="experiments"></table>`;
  const render = throttled(() => {
    const rows = [...experiments.values()].filter((e) => e.lifecycle_stage !== "deleted").sort((a, b) => (b.creation_time || 0) - (a.creation_time || 0));
    view.querySelector("#experiments").innerHTML = `<thead><tr><th>Name</th><th>ID</th><th>Created</th><th>Artifact location</th></tr></thead><tbody>` +
      rows.map((e) => `<tr data-experiment="${esc(e.experiment_id)}"><td><a href="#/experiments/${esc(e.experiment_id)}">${esc(e.name)}</a></td>
        <td>${esc(e.experiment_id)}</td><td>${esc(fmtTime(e.creation_time))}</td><td class="muted">${esc(e.artifact_location)}</td></tr>`).join("") + "</tbody>";
  });
  const sub = channel.subscribe("experiments", {}, {
    snapshot(data) { experiments = new Map(data.experiments.map((e) => [e.experiment_id, e])); render(); },
    events(events) {
      for (const { event } of events) {
        const p = event.payload, known = experiments.get(p.experiment_id);
        if (event.type === "experiment.created") experiments.set(p.experiment_id, { ...p, lifecycle_stage: "active", creation_time: p.creation_time || event.time });
        else if (known && event.type === "experiment.renamed") known.name = p.new_name;
        else if (known && event.type === "experiment.deleted") known.lifecycle_stage = "deleted";
        else if (known && event.type === "experiment.restored") known.lifecycle_stage = "active";
      }
      render();
    },
  });
  return () => sub.close();
}

// What an event is about, in a few words, for the feed.
function summary(event) {
  const p = event.payload;
  switch (event.type) {
    case "run.metrics_logged": return `${p.points} point${p.points === 1 ? "" : "s"} of ${p.keys.join(", ")}`;
    case "run.params_logged": return p.params.map((x) => `${x.key}=${x.value}`).join(", ");
    case "run.tags_set": return p.tags.map((x) => `${x.key}=${x.value}`).join(", ").slice(0, 160);
    case "run.created": return `${p.run_name} in experiment ${p.experiment_id}`;
    case "run.stop_requested": return p.reason ? `stop requested: ${p.reason}` : "stop requested";
    case "experiment.created": return p.name;
    case "run.artifact_logged": return `${p.path} (${p.size} B)`;
    case "model_version.alias_set": return `${p.name} v${p.version} → @${p.alias}`;
    case "job.created": return p.name;
    case "job.triggered": return p.cause_event_id ? `by event ${p.cause_event_id}` : `by ${p.reason}`;
    case "job.started": return `attempt ${p.attempt} on ${p.agent_id}`;
    case "job.succeeded": return `attempt ${p.attempt}, exit code ${p.exit_code}`;
    case "job.failed": return `attempt ${p.attempt}: ${p.reason}${p.will_retry ? " (will retry)" : ""}`;
    case "job.skipped": return p.reason;
    default: return "";
  }
}

function entity(event) {
  const p = event.payload;
  return p.run_id || p.experiment_id || (p.name && p.version ? `${p.name} v${p.version}` : p.name) || p.model_id || p.target || p.subscription_id || "";
}

// Every entity an event names, each a link to its page (a logged model or a deployment
// target has none: its text).
function entityLinks(event) {
  const p = event.payload, out = [];
  const registry = /^(registered_model|model_version|deployment)\./.test(event.type);
  if (p.run_id) out.push(link(href.run(p.run_id), `run ${p.run_id}`, 'data-link="run"'));
  if (p.source_run_id) out.push(link(href.run(p.source_run_id), `run ${p.source_run_id}`, 'data-link="run"'));
  if (p.experiment_id) out.push(link(href.experiment(p.experiment_id), `experiment ${p.experiment_id}`, 'data-link="experiment"'));
  if (registry && p.name) {
    out.push(link(href.model(p.name), p.name, 'data-link="model"'));
    if (p.version) out.push(link(href.version(p.name, p.version), `version ${p.version}`, 'data-link="version"'));
  }
  if (registry && p.new_name) out.push(link(href.model(p.new_name), p.new_name, 'data-link="model"'));
  if (p.model_id) out.push(esc(`logged model ${p.model_id}`));
  if (p.target) out.push(esc(p.target));
  if (p.subscription_id) out.push(esc(`webhook ${p.subscription_id}`));
  if (event.type.startsWith("job.")) out.push(link("#/jobs", `job ${p.job_id}`, 'data-link="job"'));
  return out.join(" ");
}

export function activityPage(view) {
  view.innerHTML = `<h1>Activity</h1>
    <div class="toolbar">
      <select id="type">
        <option value="">every event</option><option value="run.*">runs</option><option value="experiment.*">experiments</option>
        <option value="registered_model.*">registered models</option><option value="model_version.*">model versions</option>
        <option value="logged_model.*">logged models</option><option value="deployment.*">deployments</option><option value="webhook.*">webhooks</option><option value="job.*">jobs</option>
      </select>
      <input id="entity" type="text" placeholder="entity: a run id, experiment id or model name">
      <button id="apply">Filter</button>
      <span class="muted">newest first, as each event reaches the log</span>
    </div>
    <ul id="feed" class="feed"></ul>`;
  const list = view.querySelector("#feed");
  let sub = null;
  const item = ({ topic, partition, offset, event }) =>
    `<li data-type="${esc(event.type)}" data-offset="${offset}" data-entity="${esc(entity(event))}">
      <span class="muted">${esc(fmtTime(event.time))}</span> · <b>${esc(event.actor)}</b> ·
      <span class="type">${esc(event.type)}</span> · ${entityLinks(event)} <span class="muted">${esc(summary(event))}
      · ${esc(topic)}[${partition}]@${offset}</span></li>`;
  function subscribe() {
    if (sub) sub.close();
    const spec = {};
    const type = view.querySelector("#type").value, who = view.querySelector("#entity").value.trim();
    if (type) spec.types = [type];
    if (who) spec.entity = who;
    sub = channel.subscribe("events", spec, {
      snapshot(data) { list.innerHTML = data.events.slice().reverse().map(item).join(""); },
      events(events) {
        list.insertAdjacentHTML("afterbegin", events.slice().reverse().map(item).join(""));
        while (list.children.length > 1000) list.lastElementChild.remove();
      },
      error(message) { list.innerHTML = `<li class="error">${esc(message)}</li>`; },
    });
  }
  view.querySelector("#apply").onclick = subscribe;
  view.querySelector("#type").onchange = subscribe;
  subscribe();
  return () => sub && sub.close();
}

export function modelsPage(view) {
  const state = { logged: [], registered: [], versions: [], events: [], registryError: "" };
  view.innerHTML = `<h1>Models</h1>
    <h2>Registered models</h2><div id="registered"></div>
    <h2>Deployments</h2><div id="deployments"></div>
    <h2>Logged models</h2><div id="logged"></div>`;
  const render = throttled(() => {
    const deployments = new Map();
    for (const { event } of state.events) {
      const p = event.payload;
      if (event.type.startsWith("deployment.")) deployments.set(p.target, { target: p.target, model: `${p.name} v${p.version}`, status: event.type.split(".")[1], time: event.time, endpoint: p.endpoint });
    }
    view.querySelector("#registered").innerHTML = registeredTable(state.registered, state.versions, state.registryError);
    view.querySelector("#deployments").innerHTML = deployments.size
      ? `<table><thead><tr><th>Target</th><th>Model</th><th>Status</th><th>When</th></tr></thead><tbody>${[...deployments.values()].map((d) =>
          `<tr><td>${esc(d.target)}</td><td>${esc(d.model)}</td><td>${esc(d.status)}</td><td>${esc(fmtTime(d.time))}</td></tr>`).join("")}</tbody></table>`
      : `<p class="muted">No deployments yet.</p>`;
    view.querySelector("#logged").innerHTML = state.logged.length
      ? `<table id="logged-models"><thead><tr><th>Name</th><th>Model id</th><th>Status</th><th>Source run</th><th>Created</th></tr></thead><tbody>${state.logged.map((m) =>
          `<tr><td>${esc(m.info?.name ?? m.name)}</td><td>${esc(m.info?.model_id ?? m.model_id)}</td><td>${esc(m.info?.status ?? m.status)}</td>
           <td><a href="#/runs/${esc(m.info?.source_run_id ?? m.source_run_id)}">${esc(m.info?.source_run_id ?? m.source_run_id ?? "")}</a></td>
           <td>${esc(fmtTime(m.info?.creation_timestamp_ms ?? m.creation_timestamp_ms))}</td></tr>`).join("")}</tbody></table>`
      : `<p class="muted">No logged models yet.</p>`;
  });
  const sub = channel.subscribe("models", {}, {
    snapshot(data) { state.logged = data.logged_models; state.events = data.events; render(); },
    events(events) {
      if (events.some(({ event }) => /^(registered_model|model_version)\./.test(event.type))) loadRegistry();
      for (const { event } of events) {
        const p = event.payload;
        if (event.type === "logged_model.created") {
          state.logged.unshift({ info: { model_id: p.model_id, name: p.name, status: "LOGGED_MODEL_PENDING", source_run_id: p.source_run_id, creation_timestamp_ms: p.creation_time || event.time } });
        } else if (event.type === "logged_model.finalized") {
          const known = state.logged.find((m) => m.info.model_id === p.model_id);
          if (known) known.info.status = p.status;
        }
      }
      state.events.push(...events);
      render();
    },
  });
  // The registry's own views (every model, empty ones too), read again as its events arrive.
  let generation = 0;
  const loadRegistry = throttled(async () => {
    const mine = ++generation;
    try {
      const [models, versions] = await Promise.all([
        getJSON(`/api/2.0/mlflow/registered-models/search?max_results=1000`),
        getJSON(`/api/2.0/mlflow/model-versions/search?max_results=10000`),
      ]);
      if (mine !== generation) return;
      Object.assign(state, { registered: models.registered_models || [], versions: versions.model_versions || [], registryError: "" });
    } catch (error) {
      if (mine !== generation) return;
      state.registryError = error.message;
    }
    render();
  });
  loadRegistry();
  return () => sub.close();
}

function registeredTable(models, versions, error) {
  if (error) return `<p class="error">${esc(error)}</p>`;
  if (!models.length) return `<p class="muted">No registered models yet.</p>`;
  const byModel = new Map(models.map((m) => [m.name, []]));
  for (const v of versions) if (byModel.has(v.name)) byModel.get(v.name).push(v);
  const rows = models.slice().sort((a, b) => a.name.localeCompare(b.name)).map((m) => {
    const mine = byModel.get(m.name).sort((a, b) => Number(b.version) - Number(a.version));
    const listed = mine.length
      ? mine.map((v) => `<span data-version="${esc(v.version)}">${link(href.version(m.name, v.version), `v${v.version}`)}` +
          (v.current_stage && v.current_stage !== "None" ? ` <span class="stage" data-stage="${esc(v.current_stage)}">${esc(v.current_stage)}</span>` : "") + `</span>`).join(", ")
      : `<span class="muted hint">no versions (a registration that never got one, e.g. a failed register_model)</span>`;
    const aliases = (m.aliases || []).map((a) => `@${esc(a.alias)} → ${link(href.version(m.name, a.version), `v${a.version}`)}`).join(", ");
    return `<tr data-model="${esc(m.name)}"><td>${link(href.model(m.name), m.name)}</td><td>${listed}</td><td>${aliases}</td></tr>`;
  });
  return `<table id="registered-models"><thead><tr><th>Model</th><th>Versions (stage)</th><th>Aliases</th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
}
