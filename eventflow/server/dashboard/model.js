// A registered model's page (versions, aliases, stages, deployments; live, or as they were
// at a chosen moment through the reads' as_of) and a model version's page (its details
// and lineage graph). Both have a History tab.
import { registryActions } from "./actions.js";
import { lineageGraph } from "./graph.js";
import { historyTab, withHistory } from "./history.js";
import { channel, esc, fmtTime, getJSON, href, link, throttled } from "./util.js";

const API = "/api/2.0/mlflow";
const quoted = (text) => text.replace(/\\/g, "\\\\").replace(/'/g, "\\'"); // as the search grammar reads a '…' value

// "YYYY-MM-DDTHH:MM:SS.mmm" in local time, as a datetime-local input holds it.
function localInput(ms) {
  const d = new Date(ms);
  return new Date(ms - d.getTimezoneOffset() * 60000).toISOString().slice(0, 23);
}

function tableOf(head, rows, empty) {
  if (!rows.length) return `<p class="muted">${esc(empty)}</p>`;
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

export function modelPage(view, name) {
  let asOf = null; // ms, or null for live
  let generation = 0; // answers of an earlier load are dropped
  view.innerHTML = `<h1>Model ${esc(name)}</h1>` + withHistory(`
    <div class="toolbar" id="time-control">
      <label>Show as of <input type="datetime-local" id="as-of" step="0.001"></label>
      <button id="show-as-of">Show</button><button id="live" hidden>Back to live</button>
    </div>
    <p id="as-of-banner" class="banner" hidden></p>
    <p id="model-error" class="error"></p><div id="model-actions"></div>
    <h2>Aliases</h2><div id="aliases"></div>
    <h2>Versions</h2><div id="versions"></div>
    <h2>Deployments</h2><div id="model-deployments"></div>`);
  historyTab(view, "registered_model", name);
  const $ = (selector) => view.querySelector(selector);
  const actions = registryActions($("#model-actions"), name, null, () => load());

  async function load() {
    const mine = ++generation;
    const at = asOf === null ? "" : `&as_of=${asOf}`;
    const filter = encodeURIComponent(`name='${quoted(name)}'`);
    let model, versions, deployments;
    try {
      [model, versions, deployments] = await Promise.all([
        getJSON(`${API}/registered-models/get?name=${encodeURIComponent(name)}${at}`),
        getJSON(`${API}/model-versions/search?filter=${filter}&max_results=10000${at}`),
        getJSON(`/api/2.0/eventflow/deployments?max_results=1${at}`), // every target's state; history kept short
      ]);
    } catch (error) {
      if (mine !== generation) return;
      const message = error.status === 404 ? `Model ${name} not found.` : error.message;
      $("#model-error").textContent = asOf === null ? message : `${message} (as of ${new Date(asOf).toISOString()})`;
      $("#model-error").classList.toggle("not-found", error.status === 404);
      for (const id of ["#aliases", "#versions", "#model-deployments"]) $(id).innerHTML = "";
      return;
    }
    if (mine !== generation) return;
    $("#model-error").textContent = "";
    const aliases = model.registered_model.aliases || [];
    $("#aliases").innerHTML = tableOf(["Alias", "Version"], aliases.map((a) =>
      `<tr data-alias="${esc(a.alias)}"><td>@${esc(a.alias)}</td><td data-version="${esc(a.version)}">${link(href.version(name, a.version), `version ${a.version}`)}</td></tr>`), "No aliases.");
    const list = (versions.model_versions || []).sort((a, b) => Number(b.version) - Number(a.version));
    if (asOf === null) actions.update({ versions: list, aliases });
    $("#versions").innerHTML = tableOf(["Version", "Stage", "Aliases", "Run", "Status", "Created"], list.map((v) =>
      `<tr data-version="${esc(v.version)}"><td>${link(href.version(name, v.version), `version ${v.version}`)}</td>
        <td data-stage="${esc(v.current_stage)}">${esc(v.current_stage)}</td><td>${(v.aliases || []).map((a) => "@" + esc(a)).join(", ")}</td>
        <td>${v.run_id ? link(href.run(v.run_id), v.run_id) : ""}</td><td>${esc(v.status)}</td><td>${esc(fmtTime(v.creation_timestamp))}</td></tr>`), "No versions.");
    const mineDeployed = (deployments.deployments || []).filter((d) => d.name === name);
    $("#model-deployments").innerHTML = tableOf(["Target", "Serving", "Last deployment", "Status", "When"], mineDeployed.map((d) =>
      `<tr data-target="${esc(d.target)}"><td>${esc(d.target)}</td><td>${d.serving_version ? link(href.version(name, d.serving_version), `version ${d.serving_version}`) : ""}</td>
        <td>version ${esc(d.last_version)}</td><td>${esc(d.status)}</td><td>${esc(fmtTime(d.updated_time))}</td></tr>`), "No deployments.");
  }

  function show(moment) {
    asOf = moment;
    const banner = $("#as-of-banner");
    banner.hidden = moment === null;
    banner.textContent = moment === null ? "" : `As of ${new Date(moment).toLocaleString()} (${new Date(moment).toISOString()}): the model as it was then, not live.`;
    $("#live").hidden = moment === null;
    if (moment === null) $("#as-of").value = localInput(Date.now());
    load();
  }
  $("#show-as-of").onclick = () => {
    const value = $("#as-of").value;
    if (value) show(new Date(value).getTime()); // a datetime-local value is local time
  };
  $("#live").onclick = () => show(null);
  $("#as-of").value = localInput(Date.now());

  // Live: read again when the registry says something about this model.
  const reload = throttled(() => { if (asOf === null) load(); });
  const sub = channel.subscribe("events", { types: ["registered_model.*", "model_version.*", "deployment.*"] }, {
    events(events) { if (events.some(({ event }) => event.payload.name === name || event.payload.new_name === name)) reload(); },
  });
  load();
  return () => sub.close();
}

export function versionPage(view, name, version) {
  view.innerHTML = `<h1>${link(href.model(name), name)} version ${esc(version)}</h1>` + withHistory(`
    <div id="version-details"></div><div id="version-actions"></div>
    <h2>Lineage</h2><div id="lineage-graph"></div>`);
  historyTab(view, "model_version", `${name}/${version}`);
  const details = view.querySelector("#version-details");
  const actions = registryActions(view.querySelector("#version-actions"), name, version, () => show());
  const show = () => getJSON(`${API}/model-versions/get?name=${encodeURIComponent(name)}&version=${encodeURIComponent(version)}`).then(({ model_version: v }) => {
    actions.update({ aliases: (v.aliases || []).map((alias) => ({ alias, version })) });
    const rows = [["stage", esc(v.current_stage)], ["aliases", (v.aliases || []).map((a) => "@" + esc(a)).join(", ")],
      ["run", v.run_id ? link(href.run(v.run_id), v.run_id) : ""], ["source", esc(v.source)], ["status", esc(v.status)],
      ["created", esc(fmtTime(v.creation_timestamp))], ["description", esc(v.description)]];
    details.innerHTML = `<table class="kv">${rows.map(([k, html]) => `<tr><td>${esc(k)}</td><td>${html}</td></tr>`).join("")}</table>`;
  }).catch((error) => {
    details.innerHTML = `<p class="error ${error.status === 404 ? "not-found" : ""}">${esc(error.status === 404 ? `Version ${version} of model ${name} not found.` : error.message)}</p>`;
  });
  show();
  lineageGraph(view.querySelector("#lineage-graph"), `models:/${name}/${version}`);
}
