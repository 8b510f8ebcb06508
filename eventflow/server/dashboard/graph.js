// The lineage graph of a run or model version (GET /api/2.0/eventflow/lineage), drawn by
// vis-network (served from the installed pyvis package). Every node with a page links to
// it: a click on the node, or the list of nodes under the graph.
import { esc, getJSON, href, link } from "./util.js";

const LINEAGE = "/api/2.0/eventflow/lineage";

// The model a deployment target (NAME@ALIAS:PORT or NAME/VERSION:PORT) serves.
const deployedModel = (target) => target.replace(/:[^:]*$/, "").replace(/(@[^@]*|\/\d+)$/, "");

function pageOf(node) {
  const a = node.attributes || {};
  switch (node.type) {
    case "run": return href.run(node.id.slice("run:".length));
    case "model_version": return href.version(a.name, a.version);
    case "alias": return href.model(a.name);
    case "deployment": return href.model(deployedModel(a.target));
    case "logged_model": return a.source_run_id ? href.run(a.source_run_id) : null; // no page of its own: its run's
    default: return null; // datasets and commits have no page
  }
}

export function lineageGraph(box, uri, depth = 6) {
  box.innerHTML = `<div class="graph" data-state="loading"></div><ul class="graph-nodes"></ul>`;
  const canvas = box.querySelector(".graph"), list = box.querySelector(".graph-nodes");
  const query = new URLSearchParams({ uri, direction: "both", depth });
  getJSON(`${LINEAGE}?${query}`).then((graph) => {
    const nodes = new vis.DataSet(graph.nodes.map((n) => ({
      id: n.id, label: n.label, group: n.type, url: pageOf(n), title: n.uri || n.label, shape: "box", widthConstraint: { maximum: 180 },
      borderWidth: n.id === graph.root ? 3 : 1,
    })));
    const edges = new vis.DataSet(graph.edges.map((e) => ({ from: e.source, to: e.target, label: e.type, arrows: "to" })));
    const network = new vis.Network(canvas, { nodes, edges }, {
      layout: { hierarchical: { direction: "LR", sortMethod: "directed", levelSeparation: 280 } },
      physics: false, interaction: { hover: true }, edges: { font: { size: 11, align: "middle" } },
    });
    network.on("click", (params) => {
      const url = params.nodes.length ? nodes.get(params.nodes[0]).url : null;
      if (url) location.hash = url;
    });
    network.on("hoverNode", (params) => { canvas.style.cursor = nodes.get(params.node).url ? "pointer" : "default"; });
    network.on("blurNode", () => { canvas.style.cursor = "default"; });
    canvas.network = network; // for the browser tests
    canvas.dataset.state = "drawn";
    if (!graph.edges.length) list.insertAdjacentHTML("beforebegin", `<p class="muted">Nothing came into or out of it yet.</p>`);
    list.innerHTML = graph.nodes.map((n) => {
      const url = pageOf(n);
      return `<li data-node="${esc(n.id)}">${url ? link(url, n.label) : esc(n.label)}</li>`;
    }).join("");
  }).catch((error) => {
    canvas.dataset.state = "error";
    canvas.innerHTML = `<p class="error">${esc(error.message)}</p>`;
  });
}
