// Metric values as tables: a run's metrics (latest, min, max, step, time) and any table
// that sorts by the header clicked last (clicked again: the other way).
import { esc, fmtTime, fmtValue } from "./util.js";

// The latest point (highest step, then latest time, as MLflow ranks it), min and max of a series.
export function summarize(s) {
  let latest = -1, min = Infinity, max = -Infinity;
  for (let i = 0; i < s.value.length; i++) {
    const v = s.value[i];
    if (latest < 0 || s.step[i] > s.step[latest] || (s.step[i] === s.step[latest] && s.time[i] >= s.time[latest])) latest = i;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (latest < 0) return null;
  return { latest: s.value[latest], min, max, step: s.step[latest], time: s.time[latest], points: s.value.length };
}

// columns: [{id, label, value(row) (what it sorts by), html(row) (escaped cell; default: the value formatted)}]
export function sortableTable(table, columns, rows, rowAttrs = () => "") {
  if (!table.__sort) {
    table.__sort = { column: columns[0].id, asc: true };
    table.addEventListener("click", (e) => {
      const th = e.target.closest("th[data-sort]");
      if (!th) return;
      const sort = table.__sort;
      table.__sort = { column: th.dataset.sort, asc: sort.column === th.dataset.sort ? !sort.asc : true };
      table.__draw();
    });
  }
  table.__draw = () => {
    const { column, asc } = table.__sort;
    const by = (columns.find((c) => c.id === column) || columns[0]).value;
    const sorted = rows.slice().sort((a, b) => compare(by(a), by(b)) * (asc ? 1 : -1));
    const html = `<thead><tr>${columns.map((c) => `<th data-sort="${esc(c.id)}" class="${c.id === column ? `sorted ${asc ? "asc" : ""}` : ""}">${esc(c.label)}</th>`).join("")}</tr></thead>
      <tbody>${sorted.map((r) => `<tr ${rowAttrs(r)}>${columns.map((c) => `<td data-column="${esc(c.id)}">${c.html ? c.html(r) : esc(fmtValue(c.value(r)))}</td>`).join("")}</tr>`).join("")}</tbody>`;
    if (table.__html !== html) { table.innerHTML = html; table.__html = html; }
  };
  table.__draw();
}

// Missing values last, whichever way the column sorts.
function compare(x, y) {
  if (x === y) return 0;
  if (x === undefined || x === null) return 1;
  if (y === undefined || y === null) return -1;
  return x < y ? -1 : 1;
}

// A run's metrics from its charts' series: one row per metric.
export function runMetricsTable(table, seriesByKey) {
  const rows = [];
  for (const [key, s] of seriesByKey) { const m = summarize(s); if (m) rows.push({ key, ...m }); }
  sortableTable(table, [
    { id: "key", label: "Metric", value: (r) => r.key, html: (r) => esc(r.key) },
    { id: "latest", label: "Latest", value: (r) => r.latest },
    { id: "min", label: "Min", value: (r) => r.min },
    { id: "max", label: "Max", value: (r) => r.max },
    { id: "step", label: "Step", value: (r) => r.step },
    { id: "time", label: "Time", value: (r) => r.time, html: (r) => esc(fmtTime(r.time)) },
  ], rows, (r) => `data-metric-row="${esc(r.key)}"`);
}
