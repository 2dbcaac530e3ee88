// Usage and cost over a range of UTC days, by project, key or model: charts and a table.

import { api, query } from "./api.js";
import { bars, columns } from "./charts.js";
import { addDays, count, h, show, usd, utcDay } from "./dom.js";

const METRICS = {
  cost_usd: { title: "Cost", format: usd },
  total_tokens: { title: "Tokens", format: count },
  requests: { title: "Requests", format: count },
};

export function usageView(container, context) {
  const today = utcDay(new Date());
  const from = h("input", { id: "usage-from", type: "date", value: addDays(today, -6) });
  const to = h("input", { id: "usage-to", type: "date", value: today });
  const groupBy = h(
    "select",
    { id: "usage-group" },
    ["project", "key", "model"].map((g) => h("option", { value: g }, g)),
  );
  const project = h("input", { id: "usage-project", type: "text", placeholder: "all projects", autocomplete: "off" });
  const metric = h(
    "select",
    { id: "usage-metric" },
    Object.entries(METRICS).map(([name, m]) => h("option", { value: name }, m.title)),
  );
  const go = h("button", { type: "submit", class: "primary", id: "usage-show" }, "Show");
  const form = h(
    "form",
    { class: "toolbar", id: "usage-form" },
    h("label", {}, "From", from),
    h("label", {}, "To", to),
    h("label", {}, "Group by", groupBy),
    h("label", {}, "Project", project),
    h("label", {}, "Chart", metric),
    go,
  );
  const error = h("p", { class: "error", role: "alert", id: "usage-error" });
  const out = h("div", { id: "usage-out" });
  show(container, h("div", { class: "heading" }, h("h1", {}, "Usage and cost"), h("span", { class: "muted" }, "UTC days")), form, error, out);

  let last = null;

  function render() {
    if (!last) return;
    const { byDay, byGroup, range, group } = last;
    const m = METRICS[metric.value];
    const perDay = Object.fromEntries(byDay.map((row) => [row.day, row]));
    const days = [];
    for (let day = range.from; day <= range.to && days.length < 400; day = addDays(day, 1)) {
      days.push({ label: day, value: Number((perDay[day] || {})[metric.value] || 0) });
    }
    const groups = byGroup.map((row) => ({ label: row[group] === null ? "(none)" : String(row[group]), value: Number(row[metric.value] || 0) }));
    const totals = byGroup.reduce(
      (t, row) => ({
        requests: t.requests + row.requests,
        tokens: t.tokens + row.total_tokens,
        cost: t.cost + row.cost_usd,
      }),
      { requests: 0, tokens: 0, cost: 0 },
    );
    show(
      out,
      h(
        "div",
        { class: "stats" },
        h("div", { class: "card stat" }, h("div", { class: "stat-title" }, "Cost"), h("div", { class: "stat-value" }, usd(totals.cost))),
        h("div", { class: "card stat" }, h("div", { class: "stat-title" }, "Requests"), h("div", { class: "stat-value" }, count(totals.requests))),
        h("div", { class: "card stat" }, h("div", { class: "stat-title" }, "Tokens"), h("div", { class: "stat-value" }, count(totals.tokens))),
      ),
      h(
        "div",
        { class: "two" },
        h("div", { class: "card", id: "chart-days" }, h("h2", {}, `${m.title} per day`), columns(days, m.format, `${m.title} per day`)),
        h("div", { class: "card", id: "chart-groups" }, h("h2", {}, `${m.title} by ${group}`), bars(groups, m.format, `${m.title} by ${group}`)),
      ),
      h(
        "div",
        { class: "card table-wrap" },
        h(
          "table",
          { class: "data", id: "usage-table" },
          h("thead", {}, h("tr", {}, [group, "Requests", "Input tokens", "Output tokens", "Total tokens", "Cost"].map((t) => h("th", {}, t)))),
          h(
            "tbody",
            {},
            byGroup.length
              ? byGroup.map((row) =>
                  h(
                    "tr",
                    {},
                    h("td", {}, row[group] === null ? "(none)" : row[group]),
                    h("td", { class: "num" }, count(row.requests)),
                    h("td", { class: "num" }, count(row.input_tokens)),
                    h("td", { class: "num" }, count(row.output_tokens)),
                    h("td", { class: "num" }, count(row.total_tokens)),
                    h("td", { class: "num" }, usd(row.cost_usd)),
                  ),
                )
              : h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No usage in this range.")),
          ),
        ),
      ),
    );
  }

  async function load() {
    error.textContent = "";
    go.disabled = true;
    const range = { from: from.value, to: to.value };
    const group = groupBy.value;
    const base = { from: range.from, to: range.to, project: project.value.trim() };
    try {
      const [byDay, byGroup] = await Promise.all([
        api("GET", `/admin/usage?${query({ ...base, group_by: "day" })}`),
        api("GET", `/admin/usage?${query({ ...base, group_by: group })}`),
      ]);
      last = { byDay: byDay.data, byGroup: byGroup.data, range, group };
      render();
    } catch (err) {
      if (context.fail(err)) return;
      error.textContent = err.message;
    } finally {
      go.disabled = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  metric.addEventListener("change", render);
  load();
  return { stop() {} };
}
