// Status: health of each dependency (/health/detailed), ingest rate (from /metrics), series count
// (/api/v1/status/tsdb).

import { api } from "./api.js";
import { el, formatDuration, formatValue } from "./util.js";

const POLL_MS = 3000;

/** Sum of a counter's samples in Prometheus text (every label set). */
export function sumMetric(text, name) {
  let total = 0;
  let found = false;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== " " && rest[0] !== "{") continue;
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(value)) {
      total += value;
      found = true;
    }
  }
  return found ? total : null;
}

function stat(id, label, value, note = "") {
  return el(
    "div",
    { class: "card stat", id },
    el("div", { class: "stat-label", text: label }),
    el("div", { class: "stat-value", text: value }),
    note ? el("div", { class: "muted small", text: note }) : null,
  );
}

function checkDetails(check) {
  return Object.entries(check)
    .filter(([k]) => k !== "status")
    .map(([k, v]) => {
      if (k === "latency_seconds") return `latency ${formatValue(v, "seconds")}`;
      if (k === "utilization_ratio") return `utilization ${formatValue(v, "ratio")}`;
      if (k === "last_flush_seconds") return `last flush ${formatValue(v, "seconds")}`;
      return `${k.replace(/_/g, " ")} ${typeof v === "object" ? JSON.stringify(v) : v}`;
    })
    .join(" · ");
}

export async function mount(view) {
  const stats = el("div", { class: "stat-grid" });
  const checks = el("section", { class: "card section", id: "health-checks" });
  const top = el("section", { class: "card section", id: "top-metrics" });
  const updated = el("span", { class: "muted small" });
  view.append(el("div", { class: "page-head" }, el("h1", { text: "Status" }), updated), stats, checks, top);
  let prev = null; // {t, ingested}
  let rate = null;

  async function refresh() {
    const [health, tsdb, metricsText] = await Promise.all([
      api("/health/detailed").catch((e) => (e.body && e.body.checks ? e.body : { status: "unreachable", checks: {} })),
      api("/api/v1/status/tsdb", { query: { limit: 10 } }).catch(() => null),
      api("/metrics", { text: true }).catch(() => ""),
    ]);
    const now = performance.now();
    const ingested = sumMetric(metricsText, "rtpm_ingest_samples_total");
    if (ingested !== null && prev && now > prev.t) rate = Math.max(0, (ingested - prev.ingested) / ((now - prev.t) / 1000));
    if (ingested !== null) prev = { t: now, ingested };
    const wsConnections = sumMetric(metricsText, "rtpm_websocket_connections");
    const head = tsdb ? tsdb.data.headStats : null;
    stats.replaceChildren(
      stat("stat-health", "Health", health.status || "unknown", health.version ? `version ${health.version}` : ""),
      stat("stat-ingest", "Ingest rate", rate === null ? "measuring…" : `${formatValue(rate)}/s`, "samples committed per second"),
      stat("stat-series", "Series", head ? formatValue(head.numSeries) : "–", head ? `${formatValue(head.numSamples)} samples stored` : ""),
      stat("stat-uptime", "Uptime", health.uptime_seconds ? formatDuration(health.uptime_seconds) : "–", wsConnections !== null ? `${wsConnections} live connections` : ""),
    );
    stats.querySelector("#stat-health .stat-value").prepend(el("span", { class: `dot dot-${health.status}` }));
    checks.replaceChildren(
      el("h2", { class: "section-title", text: "Dependencies" }),
      el(
        "div",
        { class: "table-wrap" },
        el(
          "table",
          {},
          el("thead", {}, el("tr", {}, el("th", { text: "Check" }), el("th", { text: "Status" }), el("th", { text: "Details" }))),
          el(
            "tbody",
            {},
            Object.entries(health.checks || {}).map(([name, c]) =>
              el(
                "tr",
                { dataset: { check: name } },
                el("td", { text: name.replace(/_/g, " ") }),
                el("td", {}, el("span", { class: `dot dot-${c.status}` }), c.status),
                el("td", { class: "muted small", text: checkDetails(c) }),
              ),
            ),
          ),
        ),
      ),
    );
    const tops = tsdb ? tsdb.data.seriesCountByMetricName : [];
    top.replaceChildren(
      el("h2", { class: "section-title", text: "Metrics with most series" }),
      tops.length
        ? el(
            "div",
            { class: "table-wrap" },
            el(
              "table",
              {},
              el("thead", {}, el("tr", {}, el("th", { text: "Metric" }), el("th", { text: "Series" }))),
              el(
                "tbody",
                {},
                tops.map((m) =>
                  el("tr", {}, el("td", {}, el("a", { href: `#/explorer?q=${encodeURIComponent(m.name)}&metric=${encodeURIComponent(m.name)}`, text: m.name })), el("td", { class: "num", text: String(m.value) })),
                ),
              ),
            ),
          )
        : el("p", { class: "empty", text: "No series yet: push some samples." }),
    );
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), POLL_MS);
  return () => clearInterval(timer);
}
