// The dashboard: a hash router over a few pages, all fed by one live channel.
import { channel } from "./util.js";
import { experimentsPage, modelsPage, activityPage } from "./pages.js";
import { experimentPage } from "./experiment.js";
import { runPage, comparePage } from "./run.js";
import { modelPage, versionPage } from "./model.js";

const view = document.getElementById("view");
let current = null; // the page's cleanup

const routes = [
  [/^#?\/?$/, () => experimentsPage(view), "experiments"],
  // MLflow's run links (what the SDK prints when a run ends) open the run
  [/^#\/experiments\/[^/?]+\/runs\/([^/?]+)/, (m) => runPage(view, decodeURIComponent(m[1])), "experiments"],
  [/^#\/experiments\/([^/?]+)/, (m) => experimentPage(view, decodeURIComponent(m[1])), "experiments"],
  [/^#\/runs\/([^/?]+)/, (m) => runPage(view, decodeURIComponent(m[1])), "experiments"],
  [/^#\/compare\?runs=([^&]+)/, (m) => comparePage(view, decodeURIComponent(m[1]).split(",")), "experiments"],
  [/^#\/models\/([^/?]+)\/versions\/([^/?]+)/, (m) => versionPage(view, decodeURIComponent(m[1]), decodeURIComponent(m[2])), "models"],
  [/^#\/models\/([^/?]+)/, (m) => modelPage(view, decodeURIComponent(m[1])), "models"],
  [/^#\/models/, () => modelsPage(view), "models"],
  [/^#\/activity/, () => activityPage(view), "activity"],
];

function route() {
  if (current) current();
  current = null;
  view.innerHTML = "";
  for (const [pattern, page, nav] of routes) {
    const match = location.hash.match(pattern);
    if (match) {
      for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === nav);
      current = page(match);
      return;
    }
  }
  view.innerHTML = `<p class="error">No page at ${location.hash}</p>`;
}

const badge = document.getElementById("connection");
channel.onState((state) => { badge.dataset.state = state; badge.textContent = state; });
window.eventflow = { channel }; // for the browser tests and the curious
window.addEventListener("hashchange", route);
route();
