// ReasonFleet's pages: draw the plots, poll a sweep's progress, sort the leaderboard. No framework.
"use strict";

function drawFigures() {
  const source = document.getElementById("figures");
  if (!source || !window.Plotly) return;
  const figures = JSON.parse(source.textContent);
  for (const [name, figure] of Object.entries(figures)) {
    const element = document.getElementById("plot-" + name);
    if (element) Plotly.newPlot(element, figure.data, figure.layout, {displaylogo: false, responsive: true});
  }
}

function progressText(p) {
  const parts = Object.entries(p.counts).filter(([, n]) => n > 0).map(([state, n]) => `${n} ${state}`);
  return `${p.ended}/${p.total} ended` + parts.map((part) => " · " + part).join("");
}

function drawProgress(element, p) {
  for (const seg of element.querySelectorAll(".seg")) {
    const n = p.counts[seg.dataset.state] || 0;
    seg.style.width = (p.total ? (100 * n) / p.total : 0) + "%";
    seg.dataset.count = n;
    seg.title = `${n} ${seg.dataset.state}`;
  }
  const bar = element.querySelector(".bar");
  bar.setAttribute("aria-valuenow", p.ended);
  element.querySelector("[data-progress-text]").textContent = progressText(p);
  element.dataset.finished = p.finished ? "true" : "false";
}

// Each live bar asks its sweep's /api/sweeps/<id>/progress every few seconds until every job has ended.
function pollProgress(element, every) {
  const url = element.dataset.progress;
  const started = element.querySelector("[data-progress-text]").textContent;
  const tick = () => {
    fetch(url, {cache: "no-store", credentials: "same-origin"})
      .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
      .then((p) => {
        drawProgress(element, p);
        const hint = document.getElementById("new-results");
        if (hint && progressText(p) !== started) hint.hidden = false;
        if (!p.finished) setTimeout(tick, every);
      })
      .catch(() => setTimeout(tick, every * 5));  // the server restarts or the database is away: retry, slower
  };
  setTimeout(tick, every);
}

function sortTable(table, column, numeric, descending) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const value = (row) => row.cells[column].dataset.sort ?? row.cells[column].textContent;
  rows.sort((a, b) => {
    const x = value(a), y = value(b);
    if (x === "" || y === "") return (x === "") - (y === "");  // missing values last, either way
    const order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
    return descending ? -order : order;
  });
  rows.forEach((row) => body.appendChild(row));
}

function makeSortable(table) {
  table.querySelectorAll("thead th").forEach((th, column) => {
    th.classList.add("sort");
    th.addEventListener("click", () => {
      const descending = th.dataset.order !== "desc";
      table.querySelectorAll("thead th").forEach((other) => delete other.dataset.order);
      th.dataset.order = descending ? "desc" : "asc";
      sortTable(table, column, th.dataset.numeric === "true", descending);
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const every = Number(document.body.dataset.pollMs || 2000);
  document.querySelectorAll(".progress[data-progress]").forEach((element) => {
    if (element.dataset.progress && element.dataset.finished !== "true") pollProgress(element, every);
  });
  document.querySelectorAll("table.sortable").forEach(makeSortable);
});
