// Login: user name and password -> access token, kept for the token's life.

import { api } from "./api.js";
import { save } from "./session.js";
import { el, hashParams } from "./util.js";

export function mount(view) {
  const error = el("p", { class: "form-error", role: "alert", hidden: true });
  const user = el("input", { id: "login-user", name: "username", autocomplete: "username", required: true });
  const pass = el("input", {
    id: "login-pass",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const button = el("button", { type: "submit", class: "btn btn-primary btn-wide", text: "Log in" });
  const form = el(
    "form",
    { class: "login-card", id: "login-form" },
    el("h1", { class: "login-title" }, "RTPM"),
    el("p", { class: "muted", text: "Real-time performance monitoring" }),
    el("label", { for: "login-user", text: "User name" }),
    user,
    el("label", { for: "login-pass", text: "Password" }),
    pass,
    error,
    button,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    button.disabled = true;
    try {
      const tokens = await api("/api/v1/auth/login", {
        method: "POST",
        body: { username: user.value.trim(), password: pass.value },
        auth: false,
      });
      save(tokens, user.value.trim());
      const next = hashParams().next || "explorer";
      location.hash = `#/${next}`;
    } catch (e) {
      error.textContent = e.status === 401 ? "Wrong user name or password." : e.message;
      error.hidden = false;
      pass.select();
    } finally {
      button.disabled = false;
    }
  });
  view.append(el("div", { class: "login-wrap" }, form));
  user.focus();
}
