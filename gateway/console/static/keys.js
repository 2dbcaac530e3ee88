// Keys: list, create (the secret shown once), edit, disable, delete. The gateway checks every
// field; its error message is what the form shows.

import { api, query } from "./api.js";
import { addDays, count, h, show, usd, utcDay } from "./dom.js";

// Form fields, in the admin API's names.
const FIELDS = [
  { name: "id", label: "ID", kind: "text", hint: "generated when empty", createOnly: true },
  { name: "project", label: "Project", kind: "text" },
  { name: "projects", label: "Projects", kind: "list", hint: "comma-separated" },
  { name: "models", label: "Models", kind: "list", hint: "glob patterns, comma-separated; empty = every model" },
  { name: "regions", label: "Regions", kind: "list", hint: "comma-separated; empty = any" },
  { name: "rpm", label: "Requests / min", kind: "number" },
  { name: "tpm", label: "Tokens / min", kind: "number" },
  { name: "max_concurrent", label: "Concurrent", kind: "number" },
  { name: "budget_usd", label: "Budget (USD)", kind: "number" },
  { name: "budget_period", label: "Budget period", kind: "choice", choices: ["", "day", "week", "month", "total"] },
  { name: "zdr", label: "Zero data retention", kind: "bool" },
];
const NUMBER = /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/;

function shown(field, key) {
  const value = key ? key[field.name] : undefined;
  if (value === undefined || value === null) return field.kind === "bool" ? false : "";
  if (field.kind === "list") return Array.isArray(value) ? value.join(", ") : String(value);
  if (field.kind === "bool") return Boolean(value);
  return String(value);
}

// The form's text as the API's JSON value: what is typed goes as typed (a number when it is
// one), so the gateway's own checks and messages decide.
function parsed(field, raw) {
  if (field.kind === "bool") return raw;
  const text = raw.trim();
  if (text === "") return null;
  if (field.kind === "list") return text.split(",").map((t) => t.trim()).filter((t) => t !== "");
  if (field.kind === "number" && NUMBER.test(text)) return Number(text);
  return text;
}

function periodStart(period, today) {
  const d = new Date(`${today}T00:00:00Z`);
  if (period === "day") return today;
  if (period === "week") return addDays(today, -((d.getUTCDay() + 6) % 7));
  if (period === "month") return `${today.slice(0, 8)}01`;
  return addDays(today, -365); // total: the longest span a usage report covers
}

async function spending(keys) {
  const today = utcDay(new Date());
  const periods = [...new Set(keys.filter((k) => k.budget_usd).map((k) => k.budget_period || "month"))];
  const spent = {};
  await Promise.all(
    periods.map(async (period) => {
      const q = query({ group_by: "key", from: periodStart(period, today), to: today });
      const report = await api("GET", `/admin/usage?${q}`);
      spent[period] = Object.fromEntries(report.data.map((row) => [row.key, row.cost_usd]));
    }),
  );
  return (key) => (spent[key.budget_period || "month"] || {})[key.id] || 0;
}

function budget(key, spentOf) {
  if (!key.budget_usd) return h("span", { class: "muted" }, "none");
  const spent = spentOf(key);
  const share = Math.min(spent / key.budget_usd, 1);
  const fill = h("span", { class: share >= 1 ? "fill over" : share >= 0.8 ? "fill warn" : "fill" });
  fill.style.width = `${(share * 100).toFixed(1)}%`;
  return h(
    "div",
    { class: "budget", title: `${usd(spent)} of ${usd(key.budget_usd)} this ${key.budget_period || "month"}` },
    h("span", { class: "meter" }, fill),
    h("span", { class: "small" }, `${usd(spent)} / ${usd(key.budget_usd)} per ${key.budget_period || "month"}`),
  );
}

function limits(key) {
  const parts = [];
  if (key.rpm) parts.push(`${count(key.rpm)} rpm`);
  if (key.tpm) parts.push(`${count(key.tpm)} tpm`);
  if (key.max_concurrent) parts.push(`${count(key.max_concurrent)} concurrent`);
  return parts.length ? parts.join(" · ") : "none";
}

function list(values, empty) {
  if (!values || !values.length) return h("span", { class: "muted" }, empty);
  return values.map((v) => h("span", { class: "chip" }, v));
}

export function keysView(container, context) {
  const panel = h("div", { class: "panel-slot" });
  const error = h("p", { class: "error", role: "alert", id: "keys-error" });
  const table = h("div", { class: "table-wrap" });
  const create = h("button", { type: "button", class: "primary", id: "new-key" }, "New key");
  create.addEventListener("click", () => openForm(null));
  show(
    container,
    h("div", { class: "heading" }, h("h1", {}, "Keys"), create),
    panel,
    error,
    table,
  );

  async function load() {
    try {
      const keys = (await api("GET", "/admin/keys")).data;
      let spentOf = () => 0;
      try {
        spentOf = await spending(keys);
      } catch (err) {
        if (context.fail(err)) return;
        error.textContent = `Spend unavailable: ${err.message}`;
      }
      render(keys, spentOf);
    } catch (err) {
      if (context.fail(err)) return;
      error.textContent = err.message;
    }
  }

  async function act(action) {
    error.textContent = "";
    try {
      await action();
      await load();
    } catch (err) {
      if (context.fail(err)) return;
      error.textContent = err.message;
    }
  }

  function actions(key) {
    if (key.source !== "api") return h("span", { class: "muted small" }, "from the config file");
    const edit = h("button", { type: "button", class: "ghost", "data-action": "edit" }, "Edit");
    edit.addEventListener("click", () => openForm(key));
    const toggle = h(
      "button",
      { type: "button", class: "ghost", "data-action": key.disabled ? "enable" : "disable" },
      key.disabled ? "Enable" : "Disable",
    );
    toggle.addEventListener("click", () =>
      act(() => api("PATCH", `/admin/keys/${encodeURIComponent(key.id)}`, { disabled: !key.disabled })),
    );
    const remove = h("button", { type: "button", class: "ghost danger", "data-action": "delete" }, "Delete");
    remove.addEventListener("click", () => {
      if (remove.dataset.armed !== "yes") {
        remove.dataset.armed = "yes";
        remove.textContent = "Confirm delete";
        return;
      }
      act(() => api("DELETE", `/admin/keys/${encodeURIComponent(key.id)}`));
    });
    return h("div", { class: "actions" }, edit, toggle, remove);
  }

  function render(keys, spentOf) {
    const rows = keys.map((key) =>
      h(
        "tr",
        { "data-key": key.id },
        h("td", {}, h("div", { class: "key-id" }, key.id), h("div", { class: "muted small" }, key.source)),
        h("td", {}, key.project || h("span", { class: "muted" }, "none"), key.projects && key.projects.length > 1 ? h("div", {}, list(key.projects)) : null),
        h("td", {}, list(key.models, "every model")),
        h("td", {}, list(key.regions, "any")),
        h("td", { class: "small nowrap" }, limits(key)),
        h("td", {}, budget(key, spentOf)),
        h("td", {}, h("span", { class: key.disabled ? "status off" : "status on" }, key.disabled ? "disabled" : "active")),
        h("td", {}, actions(key)),
      ),
    );
    show(
      table,
      h(
        "table",
        { class: "data", id: "keys-table" },
        h("thead", {}, h("tr", {}, ["Key", "Project", "Models", "Regions", "Limits", "Budget", "Status", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No keys yet."))),
      ),
    );
  }

  function openForm(key) {
    const inputs = {};
    const controls = FIELDS.filter((f) => !(key && f.createOnly)).map((field) => {
      const id = `field-${field.name}`;
      let input;
      if (field.kind === "choice") {
        input = h("select", { id, name: field.name }, field.choices.map((c) => h("option", { value: c }, c || "default")));
        input.value = shown(field, key);
      } else if (field.kind === "bool") {
        input = h("input", { id, name: field.name, type: "checkbox" });
        input.checked = shown(field, key);
      } else {
        input = h("input", { id, name: field.name, type: "text", autocomplete: "off", spellcheck: "false" });
        input.value = shown(field, key);
      }
      inputs[field.name] = { field, input, initial: field.kind === "bool" ? input.checked : input.value };
      return h(
        "div",
        { class: field.kind === "bool" ? "field check" : "field" },
        h("label", { for: id }, field.label),
        input,
        field.hint ? h("span", { class: "hint" }, field.hint) : null,
      );
    });
    const formError = h("p", { class: "error", role: "alert", id: "form-error" });
    const save = h("button", { type: "submit", class: "primary", id: "save-key" }, key ? "Save" : "Create key");
    const cancel = h("button", { type: "button", class: "ghost" }, "Cancel");
    cancel.addEventListener("click", () => show(panel));
    const form = h(
      "form",
      { class: "card form", id: "key-form", novalidate: true },
      h("h2", {}, key ? `Edit ${key.id}` : "New key"),
      h("div", { class: "fields" }, controls),
      formError,
      h("div", { class: "actions" }, save, cancel),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      formError.textContent = "";
      for (const { input } of Object.values(inputs)) input.removeAttribute("aria-invalid");
      const body = {};
      for (const [name, { field, input, initial }] of Object.entries(inputs)) {
        const raw = field.kind === "bool" ? input.checked : input.value;
        if (key && raw === initial) continue; // an edit sends what changed
        const value = parsed(field, raw);
        if (value === null && !key) continue; // a new key leaves it at its default
        body[name] = value;
      }
      save.disabled = true;
      try {
        if (key) {
          await api("PATCH", `/admin/keys/${encodeURIComponent(key.id)}`, body);
          show(panel);
        } else {
          secret(await api("POST", "/admin/keys", body));
        }
        await load();
      } catch (err) {
        if (context.fail(err)) return;
        formError.textContent = err.message;
        const bad = err.param && inputs[err.param];
        if (bad) {
          bad.input.setAttribute("aria-invalid", "true");
          bad.input.focus();
        }
      } finally {
        save.disabled = false;
      }
    });
    show(panel, form);
    const first = form.querySelector("input");
    if (first) first.focus();
  }

  function secret(created) {
    const value = h("input", { id: "new-secret", type: "text", readonly: true, spellcheck: "false" });
    value.value = created.key;
    const copy = h("button", { type: "button", class: "primary", id: "copy-secret" }, "Copy");
    copy.addEventListener("click", async () => {
      value.select();
      try {
        await navigator.clipboard.writeText(value.value);
      } catch {
        document.execCommand("copy");
      }
      copy.textContent = "Copied";
    });
    const done = h("button", { type: "button", class: "ghost" }, "Done");
    done.addEventListener("click", () => show(panel));
    show(
      panel,
      h(
        "div",
        { class: "card secret", id: "secret-panel" },
        h("h2", {}, `Key ${created.id} created`),
        h("p", {}, "Copy the secret now: the gateway shows it only this once."),
        h("div", { class: "copy-row" }, value, copy),
        h("div", { class: "actions" }, done),
      ),
    );
  }

  load();
  return { stop() {} };
}
