// Rollway's pages work without this script; with it, lists and details follow the execution event log live.
"use strict";

// Follow the server's change stream; where there is none (an old browser, a server with every stream slot taken),
// ask again every few seconds instead.
function follow(streamUrl, onChange) {
  const indicator = document.querySelector("[data-live-indicator]");
  const poll = () => setInterval(() => onChange({ executions: null }), 5000);
  if (!window.EventSource) return poll();
  const source = new EventSource(streamUrl);
  source.addEventListener("open", () => indicator && indicator.classList.add("on"));
  source.addEventListener("error", () => {
    if (indicator) indicator.classList.remove("on");
    if (source.readyState === EventSource.CLOSED) poll();
  });
  source.addEventListener("change", (event) => onChange(JSON.parse(event.data)));
}

function debounced(action, wait) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => action(...args), wait);
  };
}

async function swap(target, url, keepOpen) {
  const response = await fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "rollway" } });
  if (!response.ok) return;
  const open = keepOpen ? [...target.querySelectorAll("details[open] .task-name")].map((n) => n.textContent) : [];
  target.innerHTML = await response.text();
  for (const name of target.querySelectorAll("details .task-name")) {
    if (open.includes(name.textContent)) name.closest("details").open = true;
  }
  target.dispatchEvent(new CustomEvent("rollway:updated", { bubbles: true }));
}

function liveExecutionList() {
  const table = document.querySelector("table[data-live-rows]");
  if (!table) return;
  const body = table.querySelector("tbody");
  const refresh = debounced(() => swap(body, table.dataset.liveRows, false), 250);
  follow(table.dataset.stream, refresh);
}

function liveExecutionDetail() {
  const holder = document.getElementById("execution-body");
  if (!holder) return;
  const refresh = debounced(() => swap(holder, holder.dataset.fragment, true), 250);
  follow(holder.dataset.stream, (change) => {
    const related = [holder.dataset.execution, ...[...holder.querySelectorAll("[data-link]")].map((a) => a.pathname.split("/").pop())];
    if (change.executions === null || change.executions.some((id) => related.includes(id))) refresh();
  });
}

// Elements with data-refresh="URL" and data-every="seconds" re-fetch their inner HTML on that period.
function periodicRefresh() {
  for (const element of document.querySelectorAll("[data-refresh]")) {
    const every = Number(element.dataset.every || "3") * 1000;
    setInterval(() => swap(element, element.dataset.refresh, false), every);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  liveExecutionList();
  liveExecutionDetail();
  periodicRefresh();
});
