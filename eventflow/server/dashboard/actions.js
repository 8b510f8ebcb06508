// The dashboard's actions. Each is a call to the REST API an MLflow client uses, so each is
// an event on the log (and a line on the Activity page); the page shows the change when its
// event comes back over the live channel. What the server refuses (a permission, a rule) is
// shown with the server's own message, never guessed here.
import { esc, getJSON } from "./util.js";

const API = "/api/2.0/mlflow";
const NOTE = "mlflow.note.content"; // where MLflow keeps a run's or an experiment's note
const OPEN = ["RUNNING", "SCHEDULED"]; // a run that can still be stopped
const STAGES = ["None", "Staging", "Production", "Archived"];

export class ActionError extends Error {
  constructor(message, code, status) { super(message); this.code = code; this.status = status; }
}

// One write; its answer, or an ActionError carrying the server's message and code.
export async function send(method, path, body) {
  const url = path.startsWith("/") ? path : `${API}/${path}`;
  const response = await fetch(url, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new ActionError(answer.message || `${response.status} ${response.statusText}`, answer.error_code || "", response.status);
  return answer;
}

// The status line of an actions box: what is being done, what was done, what was refused.
async function act(box, what, call) {
  const status = box.querySelector(".action-status");
  status.className = "action-status";
  status.textContent = `${what}…`;
  try {
    const done = await call();
    if (done === false) { status.textContent = ""; return false; } // cancelled in its dialog
    status.textContent = typeof done === "string" ? done : `${what}: done.`;
    return true;
  } catch (error) {
    status.className = "action-status error";
    status.dataset.code = error.code || "";
    status.textContent = `${what} refused${error.status ? ` (${error.status} ${error.code})` : ""}: ${error.message}`;
    return false;
  }
}

// A modal question; resolves true when confirmed.
export function confirmDialog(title, lines, confirmLabel) {
  const dialog = document.createElement("dialog");
  dialog.className = "confirm";
  dialog.innerHTML = `<h2>${esc(title)}</h2>${lines.map((l) => `<p data-line>${esc(l)}</p>`).join("")}
    <div class="toolbar"><button data-confirm>${esc(confirmLabel)}</button><button data-cancel class="secondary">Cancel</button></div>`;
  document.body.appendChild(dialog);
  return new Promise((resolve) => {
    const close = (answer) => { dialog.close(); dialog.remove(); resolve(answer); };
    dialog.querySelector("[data-confirm]").onclick = () => close(true);
    dialog.querySelector("[data-cancel]").onclick = () => close(false);
    dialog.addEventListener("cancel", (e) => { e.preventDefault(); close(false); });
    dialog.showModal();
  });
}

// An inline form that asks for text (a name, a note) in place, instead of a prompt().
function editor(box, name, multiline) {
  const form = box.querySelector(`form[data-form="${name}"]`);
  const field = form.querySelector(multiline ? "textarea" : "input");
  return {
    open(value, save) {
      form.hidden = false;
      field.value = value || "";
      field.focus();
      form.onsubmit = async (e) => {
        e.preventDefault();
        if (await save(multiline ? field.value : field.value.trim())) form.hidden = true;
      };
      form.querySelector("[data-cancel]").onclick = () => { form.hidden = true; };
    },
  };
}

const textForm = (name, label, multiline = false) => `<form data-form="${name}" class="toolbar" hidden>
  ${multiline ? `<textarea name="${name}" rows="4" cols="80"></textarea>` : `<input name="${name}" type="text" size="40">`}
  <button type="submit">${esc(label)}</button><button type="button" data-cancel class="secondary">Cancel</button></form>`;

const userTags = (tags) => Object.entries(tags || {}).filter(([k]) => !k.startsWith("mlflow.") && !k.startsWith("eventflow.")).sort();

// -- a run ----------------------------------------------------------------------------------

// Rename, note, tags, stop, delete and restore on the run page; update(run) with the page's run.
export function runActions(box, runId) {
  box.innerHTML = `<div class="actions toolbar">
      <button data-action="rename">Rename</button><button data-action="stop" hidden>Stop</button>
      <button data-action="delete">Delete</button><button data-action="restore" hidden>Restore</button>
      <span class="action-status" role="status"></span></div>
    ${textForm("rename", "Save name")}
    <p class="banner" data-deleted hidden>This run is deleted: restore it to log to it again.</p>
    <p class="banner" data-stop-request hidden></p>
    <div class="cols"><div class="card"><b>Note</b> <button data-action="note" class="secondary">Edit note</button><div data-note class="note"></div>
      ${textForm("note", "Save note", true)}</div>
    <div class="card"><b>Edit tags</b> <ul data-tags class="tag-list"></ul>
      <form data-form="tag" class="toolbar"><input name="key" placeholder="key" size="20"><input name="value" placeholder="value" size="30">
        <button type="submit">Set tag</button></form></div></div>`;
  const $ = (selector) => box.querySelector(selector);
  let run = null, stopping = false;
  const rename = editor(box, "rename"), note = editor(box, "note", true);

  $('[data-action="rename"]').onclick = () => rename.open(run && run.info.run_name, (name) =>
    act(box, "Rename", () => send("POST", "runs/update", { run_id: runId, run_name: name })));
  $('[data-action="note"]').onclick = () => note.open(run && run.tags[NOTE], (text) =>
    act(box, "Save note", () => send("POST", "runs/set-tag", { run_id: runId, key: NOTE, value: text })));
  $('form[data-form="tag"]').onsubmit = async (e) => {
    e.preventDefault();
    const form = e.target, key = form.key.value.trim();
    if (await act(box, `Set tag ${key}`, () => send("POST", "runs/set-tag", { run_id: runId, key, value: form.value.value }))) form.reset();
  };
  $("[data-tags]").onclick = (e) => {
    const button = e.target.closest("button[data-delete-tag]");
    if (button) act(box, `Delete tag ${button.dataset.deleteTag}`, () => send("POST", "runs/delete-tag", { run_id: runId, key: button.dataset.deleteTag }));
  };
  $('[data-action="delete"]').onclick = () => act(box, "Delete", async () => {
    if (!await confirmDialog(`Delete run ${run ? run.info.run_name : runId}?`,
      ["It leaves its experiment's list; it can be restored from this page."], "Delete")) return false;
    await send("POST", "runs/delete", { run_id: runId });
  });
  $('[data-action="restore"]').onclick = () => act(box, "Restore", () => send("POST", "runs/restore", { run_id: runId }));
  $('[data-action="stop"]').onclick = () => act(box, "Stop", async () => {
    if (!await confirmDialog(`Stop run ${run ? run.info.run_name : runId}?`, [
      "Its training process (the eventflow SDK) hears of it within seconds and ends the run as KILLED, as Ctrl-C would.",
      "A process logging with the MLflow client does not hear it: the run keeps running until that process ends it.",
    ], "Stop")) return false;
    await send("POST", "/api/2.0/eventflow/runs/stop", { run_id: runId, reason: "stopped from the dashboard" });
    stopping = true;
    return "Stop requested: waiting for the training process to end the run…";
  });

  function update(next) {
    run = next;
    const deleted = run.info.lifecycle_stage === "deleted", open = OPEN.includes(run.info.status);
    $('[data-action="stop"]').hidden = !open || deleted;
    $('[data-action="delete"]').hidden = deleted;
    $('[data-action="restore"]').hidden = !deleted;
    $("[data-deleted]").hidden = !deleted;
    const text = run.tags[NOTE] || "";
    if ($("[data-note]").textContent !== text) $("[data-note]").textContent = text;
    const html = userTags(run.tags).map(([k, v]) =>
      `<li data-tag="${esc(k)}">${esc(k)} = ${esc(v)} <button data-delete-tag="${esc(k)}" class="secondary">Delete</button></li>`).join("");
    if ($("[data-tags]").__html !== html) { $("[data-tags]").innerHTML = html; $("[data-tags]").__html = html; }
    const asked = run.stopRequest && open ? run.stopRequest : null; // heard live, from this page or anyone's
    $("[data-stop-request]").hidden = !asked;
    if (asked) $("[data-stop-request]").textContent = `Stop requested by ${asked.actor}${asked.reason ? ` (${asked.reason})` : ""}: `
      + "waiting for its training process to end the run.";
    if (stopping && !open) {
      stopping = false;
      $(".action-status").textContent = `Stopped: the training process ended the run ${run.info.status}.`;
    }
  }
  return { update };
}

// -- an experiment ----------------------------------------------------------------------------

// An experiment event applied to the experiment the page holds (MLflow's shape).
export function applyExperimentEvent(experiment, entry) {
  const event = entry.event, p = event.payload;
  if (!experiment || !event.type.startsWith("experiment.") || p.experiment_id !== experiment.experiment_id) return;
  const tags = (experiment.tags = (experiment.tags || []).filter((t) => t.key !== p.key || !event.type.startsWith("experiment.tag_")));
  if (event.type === "experiment.renamed") experiment.name = p.new_name;
  else if (event.type === "experiment.deleted") experiment.lifecycle_stage = "deleted";
  else if (event.type === "experiment.restored") experiment.lifecycle_stage = "active";
  else if (event.type === "experiment.tag_set") tags.push({ key: p.key, value: p.value });
}

// Rename, note, delete and restore on the experiment page; update(experiment) with the page's.
export function experimentActions(box, experimentId) {
  box.innerHTML = `<div class="actions toolbar">
      <button data-action="rename">Rename</button><button data-action="note">Edit note</button>
      <button data-action="delete">Delete</button><button data-action="restore" hidden>Restore</button>
      <span class="action-status" role="status"></span></div>
    ${textForm("rename", "Save name")}${textForm("note", "Save note", true)}
    <p class="banner" data-deleted hidden>This experiment is deleted: restore it to start runs in it again.</p>
    <div data-note class="note card" hidden></div>`;
  const $ = (selector) => box.querySelector(selector);
  let experiment = null;
  const rename = editor(box, "rename"), note = editor(box, "note", true);
  const noteOf = (e) => ((e && e.tags) || []).find((t) => t.key === NOTE)?.value || "";

  $('[data-action="rename"]').onclick = () => rename.open(experiment && experiment.name, (name) =>
    act(box, "Rename", () => send("POST", "experiments/update", { experiment_id: experimentId, new_name: name })));
  $('[data-action="note"]').onclick = () => note.open(noteOf(experiment), (text) =>
    act(box, "Save note", () => send("POST", "experiments/set-experiment-tag", { experiment_id: experimentId, key: NOTE, value: text })));
  $('[data-action="delete"]').onclick = () => act(box, "Delete", async () => {
    if (!await confirmDialog(`Delete experiment ${experiment ? experiment.name : experimentId}?`,
      ["Its runs go with it (they can be restored with it); its name stays taken until it is restored."], "Delete")) return false;
    await send("POST", "experiments/delete", { experiment_id: experimentId });
  });
  $('[data-action="restore"]').onclick = () => act(box, "Restore", () => send("POST", "experiments/restore", { experiment_id: experimentId }));

  function update(next) {
    experiment = next;
    if (!experiment) return;
    const deleted = experiment.lifecycle_stage === "deleted", text = noteOf(experiment);
    $('[data-action="delete"]').hidden = deleted;
    $('[data-action="restore"]').hidden = !deleted;
    $("[data-deleted]").hidden = !deleted;
    $("[data-note]").hidden = !text;
    if ($("[data-note]").textContent !== text) $("[data-note]").textContent = text;
  }
  return { update };
}

// -- the registry: aliases and stages, and the deployments they cause --------------------------

// The deployment targets bound to models:/NAME@ALIAS: those the server's deployer is
// configured with, and those the deployment history names ("NAME@ALIAS:PORT").
export async function boundTargets(name, alias) {
  const found = await getJSON("/api/2.0/eventflow/deployments?max_results=1");
  const bound = new Map();
  for (const t of found.targets || []) if (t.name === name && t.alias === alias) bound.set(t.target, { ...t });
  for (const d of found.deployments || []) {
    const key = d.target, aliasOf = key.startsWith(`${d.name}@`) ? key.slice(d.name.length + 1, key.lastIndexOf(":")) : null;
    if (d.name === name && aliasOf === alias) bound.set(key, { ...bound.get(key), ...d });
  }
  return [...bound.values()];
}

const where = (t) => `${t.target}${t.endpoint ? ` (${t.endpoint})` : ""}`;

async function aliasLines(name, alias, version) {
  const [targets, current] = await Promise.all([
    boundTargets(name, alias),
    getJSON(`${API}/registered-models/alias?name=${encodeURIComponent(name)}&alias=${encodeURIComponent(alias)}`).catch(() => null),
  ]);
  const before = current && current.model_version ? current.model_version.version : null;
  const lines = [before ? `@${alias} moves from version ${before} to version ${version}.` : `@${alias} will point at version ${version}.`];
  if (targets.length) {
    for (const t of targets) lines.push(`This deploys version ${version} of ${name} to ${where(t)}${t.serving_version ? `, which serves version ${t.serving_version} now` : ""}.`);
  } else {
    lines.push(`No deployment is bound to models:/${name}@${alias}: nothing is deployed.`);
  }
  return { lines, targets };
}

// Set or delete an alias and change a stage, on the model page (any version) or a version's
// page (``version`` given); each asks first, naming the deployment it causes. onDone() after each.
export function registryActions(box, name, version = null, onDone = () => {}) {
  box.innerHTML = `<div class="actions">
    <form data-form="alias" class="toolbar"><b>Alias</b> <input name="alias" placeholder="alias, e.g. production" size="22">
      ${version ? "" : `<select name="version" data-versions></select>`}<button type="submit">Set alias</button>
      <select name="existing" data-aliases></select><button type="button" data-action="delete-alias">Delete alias</button></form>
    <form data-form="stage" class="toolbar"><b>Stage</b> ${version ? "" : `<select name="version" data-versions></select>`}
      <select name="stage">${STAGES.map((s) => `<option>${s}</option>`).join("")}</select>
      <label><input type="checkbox" name="archive"> archive the versions now in that stage</label><button type="submit">Change stage</button></form>
    <span class="action-status" role="status"></span></div>`;
  const $ = (selector) => box.querySelector(selector);
  const aliasForm = $('form[data-form="alias"]'), stageForm = $('form[data-form="stage"]');
  const chosen = (form) => version || form.version.value;

  aliasForm.onsubmit = async (e) => {
    e.preventDefault();
    const alias = aliasForm.alias.value.trim(), target = chosen(aliasForm);
    const done = await act(box, `Set @${alias}`, async () => {
      if (!alias) throw new ActionError("name the alias to set", "", 0);
      const { lines, targets } = await aliasLines(name, alias, target);
      if (!await confirmDialog(`Set @${alias} on version ${target} of ${name}?`, lines, targets.length ? "Set alias and deploy" : "Set alias")) return false;
      await send("POST", "registered-models/alias", { name, alias, version: target });
    });
    if (done) { aliasForm.alias.value = ""; onDone(); }
  };
  $('[data-action="delete-alias"]').onclick = async () => {
    const alias = aliasForm.existing.value;
    const done = await act(box, `Delete @${alias}`, async () => {
      if (!alias) throw new ActionError("this model has no alias to delete", "", 0);
      const targets = await boundTargets(name, alias);
      const lines = targets.length
        ? targets.map((t) => `${where(t)} keeps serving ${t.serving_version ? `version ${t.serving_version}` : "what it serves"}: deleting an alias deploys nothing and undeploys nothing.`)
        : [`No deployment is bound to models:/${name}@${alias}.`];
      if (!await confirmDialog(`Delete @${alias} of ${name}?`, lines, "Delete alias")) return false;
      await send("DELETE", "registered-models/alias", { name, alias });
    });
    if (done) onDone();
  };
  stageForm.onsubmit = async (e) => {
    e.preventDefault();
    const target = chosen(stageForm), stage = stageForm.stage.value, archive = stageForm.archive.checked;
    const done = await act(box, `Move version ${target} to ${stage}`, async () => {
      const lines = [`Version ${target} of ${name} moves to ${stage}${archive && ["Staging", "Production"].includes(stage) ? `; the other versions in ${stage} move to Archived` : ""}.`,
        `Deployments follow aliases (models:/${name}@ALIAS), not stages: this deploys nothing.`];
      if (!await confirmDialog(`Move version ${target} of ${name} to ${stage}?`, lines, "Change stage")) return false;
      await send("POST", "model-versions/transition-stage", { name, version: target, stage, archive_existing_versions: archive });
    });
    if (done) onDone();
  };

  // The versions and aliases the forms offer (kept when they did not change, so a choice stays).
  function update({ versions = [], aliases = [] }) {
    const options = (list) => list.map(([value, label]) => `<option value="${esc(value)}">${esc(label)}</option>`).join("");
    for (const select of box.querySelectorAll("[data-versions]")) {
      const html = options(versions.map((v) => [v.version, `version ${v.version} (${v.current_stage})`]));
      if (select.__html !== html) { const keep = select.value; select.innerHTML = html; select.__html = html; if (keep) select.value = keep; }
    }
    const select = $("[data-aliases]"), html = options(aliases.map((a) => [a.alias, `@${a.alias} → v${a.version}`]));
    if (select.__html !== html) { select.innerHTML = html; select.__html = html; }
  }
  return { update };
}
