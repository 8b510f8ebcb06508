// The History tab of a run, experiment, model or version page: one row per change (its time
// exact, in UTC, as the audit CLI prints it), from
// GET /api/2.0/eventflow/audit, oldest first, a page at a time ("more" follows next_page_token).
import { esc, fmtTime, getJSON } from "./util.js";

const AUDIT = "/api/2.0/eventflow/audit";
const PAGE = 200;

// A page's content under two tabs: Overview (what it shows today) and History.
export function withHistory(overview) {
  return `<nav class="tabs"><button data-tab="overview" class="active">Overview</button><button data-tab="history">History</button></nav>
    <div data-pane="overview">${overview}</div><div data-pane="history" hidden><div id="history"></div></div>`;
}

// Wire the tabs of withHistory(); the history is read afresh each time its tab is shown.
export function historyTab(view, entityType, entity) {
  const bar = view.querySelector(".tabs");
  bar.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-tab]");
    if (!button) return;
    for (const b of bar.querySelectorAll("button[data-tab]")) b.classList.toggle("active", b === button);
    for (const pane of view.querySelectorAll("[data-pane]")) pane.hidden = pane.dataset.pane !== button.dataset.tab;
    if (button.dataset.tab === "history") load(view.querySelector("#history"), entityType, entity);
    else window.dispatchEvent(new Event("resize")); // charts drawn while hidden take their size again
  });
}

function row(e) {
  // Only an authenticated actor is the server's word; anything else is marked as a claim.
  const claim = e.authenticated ? "" : ` <span class="claim">${esc(e.trust)}</span>`;
  const effects = (e.effects || []).map((x) => `<div class="muted">→ ${esc(x.what)}</div>`).join("");
  return `<tr data-event-type="${esc(e.event_type)}" data-authenticated="${e.authenticated}">
    <td class="time" title="${esc(fmtTime(e.time))}">${esc(e.time_iso)}</td><td class="actor">${esc(e.actor)}${claim}</td>
    <td class="type">${esc(e.event_type)}</td><td class="what">${esc(e.what)}${effects}</td><td class="muted">${esc(e.position)}</td></tr>`;
}

function load(box, entityType, entity) {
  // Each load fills its own table: a slower earlier load writes into a detached one.
  box.innerHTML = `<table class="history"><thead><tr><th>Time</th><th>Actor</th><th>Event</th><th>What changed</th><th>Log position</th></tr></thead>
    <tbody></tbody></table><p class="history-footer"></p>`;
  const body = box.querySelector("tbody"), footer = box.querySelector(".history-footer");
  async function more(token) {
    footer.innerHTML = `<span class="muted">loading…</span>`;
    const query = new URLSearchParams({ entity_type: entityType, entity, max_results: PAGE });
    if (token) query.set("page_token", token);
    let answer;
    try { answer = await getJSON(`${AUDIT}?${query}`); } catch (error) { footer.innerHTML = `<span class="error">${esc(error.message)}</span>`; return; }
    body.insertAdjacentHTML("beforeend", answer.entries.map(row).join(""));
    footer.innerHTML = answer.next_page_token ? `<button class="more">more</button>`
      : body.children.length ? "" : `<span class="muted">No changes recorded.</span>`;
    if (answer.next_page_token) footer.querySelector(".more").onclick = () => more(answer.next_page_token);
  }
  more(null);
}
