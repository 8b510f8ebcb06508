// Served in place of vis-network.min.js when pyvis (eventflow[lineage]) is not installed:
// the lineage page still lists every node and edge; the graph's place says what to install.
(() => {
  const MESSAGE = "The lineage graph needs vis-network: pip install 'eventflow[lineage]'";
  window.vis = {
    DataSet: class {
      constructor(items) { this.items = new Map(items.map((item) => [item.id, item])); }
      get(id) { return this.items.get(id); }
    },
    Network: class {
      constructor(container) { container.textContent = MESSAGE; container.classList.add("muted"); }
      on() {}
    },
  };
})();
