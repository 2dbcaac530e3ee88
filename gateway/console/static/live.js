// Live state of the process that answers: request rate, errors, streams, jobs.

import { api } from "./api.js";
import { sparkline } from "./charts.js";
import { count, h, percent, show } from "./dom.js";

const EVERY_MS = 2000;
const KEEP = 60;

function card(id, title, value, note) {
  return h(
    "div",
    { class: "card stat", id },
    h("div", { class: "stat-title" }, title),
    h("div", { class: "stat-value" }, value),
    note ? h("div", { class: "stat-note" }, note) : null,
  );
}

export function liveView(container, context) {
  const history = { rps: [], streams: [] };
  const error = h("p", { class: "error", role: "alert" });
  const grid = h("div", { class: "stats" });
  const charts = h("div", { class: "two" });
  const note = h("p", { class: "muted small" });
  show(
    container,
    h("div", { class: "heading" }, h("h1", {}, "Live"), h("span", { class: "muted" }, "refreshed every 2 s")),
    error,
    grid,
    charts,
    note,
  );
  let timer = null;
  let stopped = false;

  function render(stats) {
    const r = stats.requests;
    const j = stats.jobs;
    history.rps = [...history.rps, r.per_second].slice(-KEEP);
    history.streams = [...history.streams, stats.streams.open].slice(-KEEP);
    show(
      grid,
      card("stat-rps", "Requests / s", r.per_second.toFixed(2), `${count(r.total)} since start`),
      card("stat-errors", "Server errors (5xx)", percent(r.error_rate), `${count(r.server_errors)} since start`),
      card("stat-client-errors", "Client errors (4xx)", percent(r.client_error_rate), `${count(r.client_errors)} since start`),
      card("stat-streams", "Open streams", count(stats.streams.open)),
      card("stat-queued", "Jobs queued", j.queued === null ? "unknown" : count(j.queued), "all replicas"),
      card("stat-running", "Jobs running", count(j.running), `of ${count(j.workers)} workers`),
      card("stat-failed", "Jobs failed", count(j.failed), `${count(j.completed)} completed since start`),
    );
    show(
      charts,
      h("div", { class: "card" }, h("h2", {}, "Requests / s"), sparkline(history.rps, (v) => v.toFixed(2), "Requests per second")),
      h("div", { class: "card" }, h("h2", {}, "Open streams"), sparkline(history.streams, count, "Open streams")),
    );
    const rep = stats.replica;
    note.textContent =
      `Figures of one gateway process (${rep.host}, pid ${rep.pid}, up ${Math.round(rep.uptime_s)} s); ` +
      `rates over the last ${r.window_s} s. The job queue is shared by every replica.`;
    context.setReplica(rep);
  }

  async function tick() {
    try {
      render(await api("GET", "/admin/stats"));
      error.textContent = "";
    } catch (err) {
      if (context.fail(err)) return;
      error.textContent = err.message;
    }
    if (!stopped) timer = setTimeout(tick, EVERY_MS);
  }
  tick();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
