// The dashboard: a hash router over a few pages, all fed by one live channel.
import { channel, esc } from "./util.js";
import { experimentsPage, modelsPage, activityPage } from "./pages.js";
import { experimentPage } from "./experiment.js";
import { comparePage } from "./compare.js";
import { runPage } from "./run.js";
import { modelPage, versionPage } from "./model.js";
import { jobsPage } from "./jobs.js";

const view = document.getElementById("view");
let current = null; // the page's cleanup

// MLflow's own UI routes come first: the mlflow client prints them ("View run … at:").
const routes = [
  [/^#?\/?$/, (root) => experimentsPage(root), "experiments"],
  [/^#\/experiments\/[^/?]+\/runs\/([^/?]+)\/artifacts\/([^?]+)/, (root, m) => runPage(root, decodeURIComponent(m[1]), decodeURIComponent(m[2])), "experiments"],
  [/^#\/experiments\/[^/?]+\/runs\/([^/?]+)/, (root, m) => runPage(root, decodeURIComponent(m[1])), "experiments"],
  [/^#\/experiments\/([^/?]+)/, (root, m) => experimentPage(root, decodeURIComponent(m[1])), "experiments"],
  [/^#\/runs\/([^/?]+)/, (root, m) => runPage(root, decodeURIComponent(m[1])), "experiments"],
  [/^#\/compare\?runs=([^&]+)/, (root, m) => comparePage(root, decodeURIComponent(m[1]).split(",")), "experiments"],
  [/^#\/models\/([^/?]+)\/versions\/([^/?]+)/, (root, m) => versionPage(root, decodeURIComponent(m[1]), decodeURIComponent(m[2])), "models"],
  [/^#\/models\/([^/?]+)/, (root, m) => modelPage(root, decodeURIComponent(m[1])), "models"],
  [/^#\/models/, (root) => modelsPage(root), "models"],
  [/^#\/jobs/, (root) => jobsPage(root), "jobs"],
  [/^#\/activity/, (root) => activityPage(root), "activity"],
];

function route() {
  if (current) current();
  current = null;
  // Each page gets its own element: a late redraw or answer of the page left behind
  // finds its own (detached) elements, never null and never the next page's.
  const root = document.createElement("div");
  view.replaceChildren(root);
  for (const [pattern, page, nav] of routes) {
    const match = location.hash.match(pattern);
    if (match) {
      for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === nav);
      current = page(root, match);
      return;
    }
  }
  root.innerHTML = `<p class="error">No page at ${esc(location.hash)}</p>`;
}

const badge = document.getElementById("connection");
channel.onState((state) => { badge.dataset.state = state; badge.textContent = state; });
window.eventflow = { channel }; // for the browser tests and the curious
window.addEventListener("hashchange", route);
route();
