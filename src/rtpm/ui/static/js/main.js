// The single page: hash routes (#/login, #/explorer, #/dashboards, #/alerts, #/status).

import { api, setUnauthorizedHandler } from "./api.js";
import { current, clearSession, onExpired, save, schedule } from "./session.js";
import { clear, toast } from "./util.js";
import * as login from "./login.js";
import * as explorer from "./explorer.js";
import * as dashboards from "./dashboards.js";
import * as alerts from "./alerts.js";
import * as status from "./status.js";

const VIEWS = { login, explorer, dashboards, alerts, status };
const view = document.getElementById("view");
let cleanup = null;
let mountedRoute = "";

function routeName() {
  const path = location.hash.replace(/^#\/?/, "").split("?")[0];
  return VIEWS[path] ? path : "";
}

function toLogin(message) {
  if (message) toast(message, "warn");
  const next = routeName() && routeName() !== "login" ? routeName() : "explorer";
  location.hash = `#/login?next=${next}`;
}

async function render() {
  let name = routeName();
  const session = current();
  if (!session && name !== "login") {
    toLogin();
    return;
  }
  if (!name) name = "explorer";
  const key = location.hash.split("?")[0] + (name === "login" ? "" : "");
  if (key === mountedRoute && cleanup) return; // same view: parameter changes are the view's own business
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      console.error(e);
    }
    cleanup = null;
  }
  mountedRoute = key;
  const top = document.getElementById("topbar");
  top.hidden = name === "login";
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === name);
  document.getElementById("who-name").textContent = session ? session.username || "" : "";
  document.getElementById("logout").hidden = !session || session.anonymous;
  clear(view);
  view.dataset.view = name;
  document.title = `RTPM · ${name[0].toUpperCase()}${name.slice(1)}`;
  cleanup = (await VIEWS[name].mount(view)) || null;
}

async function start() {
  setUnauthorizedHandler(() => toLogin("Your session has ended; please log in again."));
  onExpired(() => toLogin("Your session has expired; please log in again."));
  document.getElementById("logout").addEventListener("click", () => {
    clearSession();
    toLogin();
  });
  if (!current()) {
    // With authentication off, or the anonymous role on (RTPM_AUTH__ANONYMOUS_ROLE), a caller
    // without a credential may read: no login needed (Log out leads to the login form).
    try {
      const me = await api("/api/v1/auth/me", { auth: false });
      if (me && (me.kind === "anonymous_dev" || me.kind === "anonymous")) save({}, "anonymous");
    } catch {
      /* a login is needed */
    }
  }
  schedule();
  window.addEventListener("hashchange", render);
  await render();
}

start();
