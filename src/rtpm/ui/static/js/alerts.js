// Alerts: active alerts (state, severity, since, value) with manual resolve; history; rules with
// create/edit forms for the threshold form and for PromQL.

import { api } from "./api.js";
import { LiveClient } from "./live.js";
import { el, formatDuration, formatTime, formatValue, since, toast } from "./util.js";

const SEVERITIES = ["critical", "high", "error", "warning", "medium", "low", "info"];
const CONDITIONS = [">", ">=", "<", "<=", "==", "!="];
const AGGREGATIONS = ["", "avg", "min", "max", "sum", "count", "p95", "p99", "rate"];
const PAGE = 25;

function labelPills(labels) {
  const keys = Object.keys(labels || {}).filter((k) => k !== "alertname" && k !== "severity").sort();
  if (!keys.length) return el("span", { class: "muted", text: "–" });
  return el("div", { class: "labels" }, keys.map((k) => el("span", { class: "label-pill", text: `${k}=${labels[k]}` })));
}

function table(headers, rows, emptyText) {
  if (!rows.length) return el("p", { class: "empty", text: emptyText });
  // On a phone each row stacks into a block; every cell carries its column name.
  for (const row of rows) [...row.children].forEach((td, i) => headers[i] && td.setAttribute("data-col", headers[i]));
  return el(
    "div",
    { class: "table-wrap stack" },
    el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", { text: h })))), el("tbody", {}, rows)),
  );
}

function parseLabels(text) {
  const out = {};
  for (const part of text.split(",")) {
    const p = part.trim();
    if (!p) continue;
    const i = p.indexOf("=");
    if (i <= 0) throw new Error(`Label "${p}" is not name=value.`);
    out[p.slice(0, i).trim()] = p.slice(i + 1).trim().replace(/^"(.*)"$/, "$1");
  }
  return out;
}

function field(label, input, cls = "") {
  return el("label", { class: `field ${cls}` }, el("span", { text: label }), input);
}

export async function mount(view) {
  let tab = "active";
  let historyOffset = 0;
  let editing = null; // the rule being edited, or null for a new one
  let mode = "threshold";
  let metricNames = [];
  const me = await api("/api/v1/auth/me").catch(() => null);

  const tabs = el("div", { class: "tabs", role: "tablist" });
  const body = el("div", { class: "alerts-body" });
  const newBtn = el("button", { type: "button", class: "btn btn-primary", id: "new-rule", text: "New rule", onclick: () => openForm(null) });
  view.append(el("div", { class: "page-head" }, el("h1", { text: "Alerts" }), newBtn), tabs, body);

  const TABS = [
    ["active", "Active"],
    ["history", "History"],
    ["rules", "Rules"],
  ];
  function renderTabs() {
    tabs.replaceChildren(
      ...TABS.map(([id, label]) =>
        el("button", {
          type: "button",
          role: "tab",
          class: `tab${tab === id ? " active" : ""}`,
          id: `tab-${id}`,
          "aria-selected": String(tab === id),
          text: label,
          onclick: () => {
            tab = id;
            editing = undefined;
            renderTabs();
            refresh();
          },
        }),
      ),
    );
  }

  function showError(e) {
    toast(e.message || String(e), "error");
  }

  async function refresh() {
    try {
      if (editing !== undefined && tab === "rules") return; // the form is open
      if (tab === "active") await renderActive();
      else if (tab === "history") await renderHistory();
      else await renderRules();
    } catch (e) {
      body.replaceChildren(el("p", { class: "form-error", text: e.message }));
    }
  }

  async function renderActive() {
    const alerts = await api("/api/v1/alerts/active");
    if (tab !== "active") return;
    const rows = alerts.map((a) =>
      el(
        "tr",
        { dataset: { alertId: a.id, rule: a.rule_name }, class: "alert-row" },
        el("td", {}, el("span", { class: `state state-${a.status}`, text: a.status })),
        el("td", {}, el("span", { class: `sev sev-${a.severity}`, text: a.severity })),
        el("td", {}, el("b", { text: a.rule_name }), el("div", {}, labelPills(a.labels))),
        el("td", { class: "num", text: formatValue(a.current_value) }),
        el("td", { class: "num", title: formatTime(Date.parse(a.started_at)), text: since(a.started_at) }),
        el(
          "td",
          {},
          el("button", {
            type: "button",
            class: "btn btn-small resolve",
            text: "Resolve",
            onclick: async (ev) => {
              ev.target.disabled = true;
              try {
                await api(`/api/v1/alerts/resolve/${a.id}`, { method: "POST" });
                toast(`Alert ${a.rule_name} resolved`);
              } catch (e) {
                showError(e);
              }
              refresh();
            },
          }),
        ),
      ),
    );
    body.replaceChildren(
      el(
        "section",
        { class: "card", id: "active-alerts" },
        table(["State", "Severity", "Alert", "Value", "Since", ""], rows, "No active alerts."),
      ),
    );
  }

  async function renderHistory() {
    const page = await api("/api/v1/alerts/history", { query: { limit: PAGE, offset: historyOffset } });
    if (tab !== "history") return;
    const rows = page.alerts.map((a) =>
      el(
        "tr",
        { dataset: { alertId: a.id }, class: "history-row" },
        el("td", {}, el("span", { class: `state state-${a.status}`, text: a.status })),
        el("td", {}, el("span", { class: `sev sev-${a.severity}`, text: a.severity })),
        el("td", {}, el("b", { text: a.rule_name }), el("div", {}, labelPills(a.labels))),
        el("td", { class: "num", text: formatValue(a.current_value) }),
        el("td", { class: "num", text: formatTime(Date.parse(a.started_at)) }),
        el("td", { class: "num", text: a.resolved_at ? formatTime(Date.parse(a.resolved_at)) : "–" }),
        el("td", { class: "resolved-by", text: a.resolved_by ? (me && a.resolved_by === me.subject ? me.name || "you" : a.resolved_by) : "" }),
      ),
    );
    const pager = el(
      "div",
      { class: "form-actions" },
      el("button", {
        type: "button",
        class: "btn",
        text: "Newer",
        disabled: historyOffset === 0,
        onclick: () => {
          historyOffset = Math.max(0, historyOffset - PAGE);
          refresh();
        },
      }),
      el("span", { class: "muted", text: `${page.total ? historyOffset + 1 : 0}–${historyOffset + page.alerts.length} of ${page.total}` }),
      el("button", {
        type: "button",
        class: "btn",
        text: "Older",
        disabled: historyOffset + PAGE >= page.total,
        onclick: () => {
          historyOffset += PAGE;
          refresh();
        },
      }),
    );
    body.replaceChildren(
      el(
        "section",
        { class: "card", id: "alert-history" },
        table(["State", "Severity", "Alert", "Value", "Started", "Resolved", "By"], rows, "No alerts yet."),
        pager,
      ),
    );
  }

  async function renderRules() {
    const rules = await api("/api/v1/alerts/rules");
    if (tab !== "rules") return;
    const rows = rules.map((r) =>
      el(
        "tr",
        { dataset: { ruleId: r.id }, class: "rule-row" },
        el("td", {}, el("b", { text: r.name }), r.last_error ? el("div", { class: "form-error small", text: r.last_error }) : null),
        el("td", { class: "expr", text: r.expr }),
        el("td", {}, el("span", { class: `sev sev-${r.severity}`, text: r.severity })),
        el("td", { class: "num", text: `${formatDuration(r.for_duration) || "0s"} / ${formatDuration(r.evaluation_interval)}` }),
        el("td", { text: r.enabled ? "yes" : "no" }),
        el(
          "td",
          {},
          el(
            "div",
            { class: "row-actions" },
            el("button", { type: "button", class: "btn btn-small", text: "Edit", onclick: () => openForm(r) }),
            el("button", {
              type: "button",
              class: "btn btn-small",
              text: r.enabled ? "Disable" : "Enable",
              onclick: async () => {
                try {
                  await api(`/api/v1/alerts/rules/${r.id}`, { method: "PUT", body: { enabled: !r.enabled } });
                } catch (e) {
                  showError(e);
                }
                refresh();
              },
            }),
            el("button", {
              type: "button",
              class: "btn btn-small btn-danger",
              text: "Delete",
              onclick: async (ev) => {
                if (ev.target.dataset.armed !== "1") {
                  ev.target.dataset.armed = "1";
                  ev.target.textContent = "Confirm delete";
                  return;
                }
                try {
                  await api(`/api/v1/alerts/rules/${r.id}`, { method: "DELETE" });
                } catch (e) {
                  showError(e);
                }
                refresh();
              },
            }),
          ),
        ),
      ),
    );
    body.replaceChildren(
      el(
        "section",
        { class: "card", id: "alert-rules" },
        table(["Rule", "Expression", "Severity", "For / every", "Enabled", ""], rows, "No rules yet: make one with New rule."),
      ),
    );
  }

  async function openForm(rule) {
    tab = "rules";
    renderTabs();
    editing = rule;
    mode = rule && !rule.metric_name ? "promql" : "threshold";
    if (!metricNames.length) {
      try {
        metricNames = (await api("/api/v1/metrics/names")).metrics.map((m) => m.name);
      } catch {
        metricNames = [];
      }
    }
    renderForm();
  }

  function renderForm() {
    const r = editing || {};
    const isThreshold = mode === "threshold";
    const name = el("input", { id: "rule-name", value: r.name || "", required: true, autocomplete: "off" });
    const severity = el("select", { id: "rule-severity" }, SEVERITIES.map((s) => el("option", { value: s, text: s, selected: (r.severity || "warning") === s })));
    const forInput = el("input", { id: "rule-for", value: r.for_duration !== undefined ? formatDuration(r.for_duration) : "1m", placeholder: "e.g. 5m" });
    const every = el("input", { id: "rule-interval", value: r.evaluation_interval ? formatDuration(r.evaluation_interval) : "30s", placeholder: "e.g. 30s" });
    const summary = el("input", { id: "rule-summary", value: (r.annotations || {}).summary || "", placeholder: "CPU on {{ $labels.host }} is {{ $value }}" });
    const enabled = el("input", { type: "checkbox", id: "rule-enabled", checked: r.enabled !== false });
    const metricList = el("datalist", { id: "rule-metric-names" }, metricNames.map((n) => el("option", { value: n })));
    const metric = el("input", { id: "rule-metric", list: "rule-metric-names", value: r.metric_name || "", autocomplete: "off" });
    const labels = el("input", {
      id: "rule-labels",
      value: Object.entries(r.labels || {}).map(([k, v]) => `${k}=${v}`).join(", "),
      placeholder: "host=web-1, env=prod",
    });
    const aggregation = el("select", { id: "rule-aggregation" }, AGGREGATIONS.map((a) => el("option", { value: a, text: a || "none (latest value)", selected: (r.aggregation || "") === a })));
    const windowInput = el("input", { id: "rule-window", value: r.window ? formatDuration(r.window) : "5m" });
    const condition = el("select", { id: "rule-condition" }, CONDITIONS.map((c) => el("option", { value: c, text: c, selected: (r.condition || ">") === c })));
    const threshold = el("input", { id: "rule-threshold", type: "number", step: "any", value: r.threshold ?? "" });
    const expr = el("textarea", { id: "rule-expr", rows: "3", spellcheck: "false", placeholder: "rate(http_errors_total[5m]) > 0.1" });
    expr.value = r.expr || "";
    const error = el("p", { class: "form-error", role: "alert", hidden: true });

    const modeTabs = el(
      "div",
      { class: "tabs" },
      [["threshold", "Threshold"], ["promql", "PromQL"]].map(([id, label]) =>
        el("button", {
          type: "button",
          class: `tab${mode === id ? " active" : ""}`,
          id: `rule-mode-${id}`,
          text: label,
          onclick: () => {
            mode = id;
            renderForm();
          },
        }),
      ),
    );
    const specific = isThreshold
      ? el(
          "div",
          { class: "form-grid" },
          field("Metric", metric),
          field("Label filters", labels),
          field("Aggregation", aggregation),
          field("Window", windowInput),
          field("Condition", condition),
          field("Threshold", threshold),
        )
      : el("div", { class: "field" }, el("label", { for: "rule-expr", class: "field" }, el("span", { text: "PromQL expression (alerts while it returns series)" })), expr);
    const form = el(
      "form",
      { class: "card", id: "rule-form" },
      el("h2", { class: "section-title", text: editing ? `Edit rule ${r.name}` : "New rule" }),
      modeTabs,
      el("div", { class: "form-grid" }, field("Name", name), field("Severity", severity), field("For", forInput), field("Evaluate every", every)),
      el("div", { class: "spacer" }),
      specific,
      metricList,
      el("div", { class: "form-grid" }, field("Summary (annotation)", summary, "wide"), el("label", { class: "field check" }, enabled, " Enabled")),
      error,
      el(
        "div",
        { class: "form-actions" },
        el("button", { type: "submit", class: "btn btn-primary", id: "rule-save", text: editing ? "Save rule" : "Create rule" }),
        el("button", {
          type: "button",
          class: "btn",
          text: "Cancel",
          onclick: () => {
            editing = undefined;
            refresh();
          },
        }),
      ),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.hidden = true;
      try {
        const payload = {
          name: name.value.trim(),
          severity: severity.value,
          for_duration: forInput.value.trim() || "0s",
          evaluation_interval: every.value.trim() || "30s",
          enabled: enabled.checked,
          annotations: { ...(r.annotations || {}) },
        };
        if (summary.value.trim()) payload.annotations.summary = summary.value.trim();
        else delete payload.annotations.summary;
        if (isThreshold) {
          if (threshold.value === "") throw new Error("Threshold: a number is needed.");
          Object.assign(payload, {
            metric_name: metric.value.trim(),
            labels: parseLabels(labels.value),
            condition: condition.value,
            threshold: Number(threshold.value),
            aggregation: aggregation.value || null,
            window: aggregation.value ? windowInput.value.trim() || "5m" : null,
          });
          if (editing && !editing.metric_name) payload.expr = null;
        } else {
          payload.expr = expr.value.trim();
          if (!payload.expr) throw new Error("Expression: PromQL is needed.");
        }
        if (editing) await api(`/api/v1/alerts/rules/${editing.id}`, { method: "PUT", body: payload });
        else await api("/api/v1/alerts/rules", { method: "POST", body: payload });
        toast(`Rule ${payload.name} saved`);
        editing = undefined;
        refresh();
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
      }
    });
    body.replaceChildren(form);
    name.focus();
  }

  editing = undefined;
  renderTabs();
  await refresh();
  const timer = setInterval(() => {
    if (tab !== "rules") refresh();
  }, 5000);
  const live = new LiveClient({ onAlert: () => tab !== "rules" && refresh() });
  live.subscribe({ subscription: "alerts" });
  return () => {
    clearInterval(timer);
    live.close();
  };
}
