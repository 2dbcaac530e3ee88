// The console: asks for the admin key, then shows live state, keys and usage.

import { api, ApiError, signIn, signOut } from "./api.js";
import { h, show } from "./dom.js";
import { keysView } from "./keys.js";
import { liveView } from "./live.js";
import { usageView } from "./usage.js";

const root = document.getElementById("app");
const VIEWS = [
  { id: "live", title: "Live", make: liveView },
  { id: "keys", title: "Keys", make: keysView },
  { id: "usage", title: "Usage", make: usageView },
];
let current = null; // {stop()} of the view on screen

function stopView() {
  if (current && current.stop) current.stop();
  current = null;
}

// A 401 once signed in (the admin key changed): back to the sign-in form.
function onUnauthorized(err) {
  stopView();
  signOut();
  login(err.message);
}

function login(message) {
  const input = h("input", {
    id: "admin-key",
    name: "admin-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "Admin key",
    required: true,
  });
  const error = h("p", { class: "error", id: "login-error", role: "alert" }, message || "");
  const button = h("button", { type: "submit", class: "primary" }, "Open console");
  const form = h(
    "form",
    { class: "login card", id: "login" },
    h("div", { class: "brand big" }, h("span", { class: "logo" }), "Gateway console"),
    h("p", { class: "muted" }, "Enter the admin key. It stays in this tab's memory only and is sent as a bearer header."),
    h("label", { for: "admin-key" }, "Admin key"),
    input,
    error,
    button,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    error.textContent = "";
    signIn(input.value);
    try {
      const stats = await api("GET", "/admin/stats");
      input.value = "";
      shell(stats);
    } catch (err) {
      signOut();
      error.textContent = err.message;
      button.disabled = false;
      input.focus();
    }
  });
  show(root, h("main", { class: "center" }, form));
  input.focus();
}

function shell(stats) {
  const replica = h("span", { class: "replica", id: "replica" });
  const setReplica = (r) => {
    replica.textContent = `${r.host} · pid ${r.pid}`;
    replica.title = "The process that answered the live figures";
  };
  setReplica(stats.replica);
  const tabs = VIEWS.map((v) =>
    h("button", { type: "button", class: "tab", id: `tab-${v.id}`, "data-view": v.id, onclick: () => open(v.id) }, v.title),
  );
  const body = h("section", { class: "view", id: "view" });
  const lock = h("button", { type: "button", class: "ghost", id: "sign-out" }, "Lock");
  lock.addEventListener("click", () => {
    stopView();
    signOut();
    login("Locked: the admin key was forgotten.");
  });
  show(
    root,
    h(
      "header",
      { class: "top" },
      h("div", { class: "brand" }, h("span", { class: "logo" }), "Gateway console"),
      h("nav", { class: "tabs" }, tabs),
      h("div", { class: "right" }, replica, lock),
    ),
    h("main", { class: "page" }, body),
  );
  const context = {
    fail: (err) => {
      if (err instanceof ApiError && err.status === 401) {
        onUnauthorized(err);
        return true;
      }
      return false;
    },
    setReplica,
  };
  function open(id) {
    stopView();
    for (const t of tabs) t.classList.toggle("active", t.dataset.view === id);
    const view = VIEWS.find((v) => v.id === id);
    current = view.make(body, context);
  }
  open("live");
}

login("");
