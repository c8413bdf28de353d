// Explorer: pick a metric (searchable, with type, unit, help), filter by labels, or type PromQL;
// a time range and step; a chart; live mode over the WebSocket.

import { api, queryRange } from "./api.js";
import { LineChart } from "./chart.js";
import { LiveClient, selectorSubscription } from "./live.js";
import { timeRangePicker } from "./timerange.js";
import { debounce, el, hashParams, setHashParams } from "./util.js";

const OPS = ["=", "!=", "=~", "!~"];
const MAX_LISTED = 300;

function quote(v) {
  return JSON.stringify(v);
}

export function buildSelector(metric, filters) {
  const inner = filters.map((f) => `${f.name}${f.op}${quote(f.value)}`).join(", ");
  return inner ? `${metric}{${inner}}` : metric;
}

export async function mount(view) {
  const params = hashParams();
  const state = {
    metrics: [],
    metric: params.metric || "",
    filters: [],
    live: false,
    liveClient: null,
    poll: 0,
    abort: null,
  };
  try {
    state.filters = JSON.parse(params.filters || "[]");
  } catch {
    state.filters = [];
  }

  // -- the metric list -------------------------------------------------------------------------
  const search = el("input", {
    type: "search",
    id: "metric-search",
    placeholder: "Search metrics",
    "aria-label": "Search metrics",
    autocomplete: "off",
  });
  const list = el("ul", { class: "metric-list", id: "metric-list", role: "listbox", "aria-label": "Metrics" });
  const countNote = el("p", { class: "muted small pad-x" });
  const pane = el("aside", { class: "metric-pane card" }, search, countNote, list);

  function renderList() {
    const q = search.value.trim().toLowerCase();
    const found = state.metrics.filter(
      (m) => !q || m.name.toLowerCase().includes(q) || (m.help || "").toLowerCase().includes(q),
    );
    list.replaceChildren(
      ...found.slice(0, MAX_LISTED).map((m) =>
        el(
          "li",
          {
            class: `metric-item${m.name === state.metric ? " selected" : ""}`,
            role: "option",
            tabindex: "0",
            "aria-selected": m.name === state.metric ? "true" : "false",
            dataset: { name: m.name },
            onclick: () => pickMetric(m.name),
            onkeydown: (e) => {
              if (e.key === "Enter" || e.key === " ") {
                e.preventDefault();
                pickMetric(m.name);
              }
            },
          },
          el(
            "div",
            { class: "metric-head" },
            el("span", { class: "metric-name", text: m.name, title: m.name }),
            el("span", { class: `badge badge-${m.type || "unknown"}`, text: m.type || "unknown" }),
          ),
          el(
            "div",
            { class: "metric-meta" },
            [m.unit ? `unit: ${m.unit}` : null, `${m.series_count} series`].filter(Boolean).join(" · "),
          ),
          m.help ? el("div", { class: "metric-help", text: m.help, title: m.help }) : null,
        ),
      ),
    );
    countNote.textContent =
      found.length > MAX_LISTED
        ? `${MAX_LISTED} of ${found.length} metrics shown; refine the search`
        : `${found.length} metric${found.length === 1 ? "" : "s"}`;
  }
  search.addEventListener("input", debounce(renderList, 80));

  // -- the query bar ---------------------------------------------------------------------------
  const labelNames = el("datalist", { id: "label-names" });
  const labelValues = el("datalist", { id: "label-values" });
  const fName = el("input", {
    id: "filter-name",
    list: "label-names",
    placeholder: "label",
    "aria-label": "Label name",
    autocomplete: "off",
    size: "10",
  });
  const fOp = el("select", { id: "filter-op", "aria-label": "Operator" }, OPS.map((o) => el("option", { value: o, text: o })));
  const fValue = el("input", {
    id: "filter-value",
    list: "label-values",
    placeholder: "value",
    "aria-label": "Label value",
    autocomplete: "off",
    size: "14",
  });
  const fAdd = el("button", { type: "submit", class: "btn", id: "filter-add", text: "Add filter" });
  const chips = el("div", { class: "chips", id: "filter-chips" });
  const filterForm = el("form", { class: "filter-form" }, fName, fOp, fValue, fAdd, labelNames, labelValues);
  const promql = el("textarea", {
    id: "promql",
    class: "promql",
    rows: "2",
    spellcheck: "false",
    placeholder: "PromQL, e.g. rate(http_requests_total[5m]) — Ctrl+Enter runs it",
    "aria-label": "PromQL query",
  });
  promql.value = params.q || "";
  const picker = timeRangePicker({
    range: params.range,
    start: params.start ? Number(params.start) : undefined,
    end: params.end ? Number(params.end) : undefined,
    step: params.step,
    idPrefix: "explorer",
    onChange: () => run(),
  });
  const runBtn = el("button", { type: "button", class: "btn btn-primary", id: "run", text: "Run", onclick: () => run() });
  const liveBtn = el("button", {
    type: "button",
    class: "btn btn-live",
    id: "live-toggle",
    "aria-pressed": "false",
    text: "Live",
    onclick: () => setLive(!state.live),
  });
  const queryCard = el(
    "section",
    { class: "card query-card" },
    el("div", { class: "filters" }, el("span", { class: "field-label", text: "Filters" }), chips, filterForm),
    promql,
    el("div", { class: "controls" }, picker.root, el("div", { class: "controls-end" }, liveBtn, runBtn)),
  );

  // -- the chart -------------------------------------------------------------------------------
  const title = el("h2", { class: "chart-title", text: "Pick a metric or type a query" });
  const info = el("span", { class: "muted small", id: "chart-info" });
  const liveState = el("span", { class: "live-state", id: "live-state", hidden: true });
  const errorBox = el("p", { class: "form-error", id: "query-error", role: "alert", hidden: true });
  const chartHost = el("div", { id: "chart" });
  const chartCard = el(
    "section",
    { class: "card chart-card" },
    el("div", { class: "chart-head" }, title, el("div", { class: "chart-head-end" }, liveState, info)),
    errorBox,
    chartHost,
  );
  const chart = new LineChart(chartHost, { height: window.innerWidth < 640 ? 260 : 340 });

  view.append(el("div", { class: "explorer" }, pane, el("div", { class: "explore-main" }, queryCard, chartCard)));

  // -- behaviour -------------------------------------------------------------------------------
  function renderChips() {
    chips.replaceChildren(
      ...state.filters.map((f, i) =>
        el(
          "span",
          { class: "chip" },
          `${f.name} ${f.op} "${f.value}"`,
          el("button", {
            type: "button",
            class: "chip-x",
            "aria-label": `Remove filter ${f.name}`,
            text: "×",
            onclick: () => {
              state.filters.splice(i, 1);
              filtersChanged();
            },
          }),
        ),
      ),
    );
    if (!state.filters.length) chips.append(el("span", { class: "muted small", text: "none" }));
  }

  function filtersChanged() {
    renderChips();
    if (state.metric) {
      promql.value = buildSelector(state.metric, state.filters);
      run();
    }
  }

  async function loadLabels() {
    if (!state.metric) return;
    try {
      const data = await api("/api/v1/labels", { query: { "match[]": state.metric } });
      labelNames.replaceChildren(
        ...data.data.filter((n) => n !== "__name__").map((n) => el("option", { value: n })),
      );
    } catch {
      /* autocomplete is a convenience */
    }
  }

  const loadValues = debounce(async () => {
    const name = fName.value.trim();
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) return;
    try {
      const query = state.metric ? { "match[]": state.metric } : {};
      const data = await api(`/api/v1/label/${encodeURIComponent(name)}/values`, { query });
      labelValues.replaceChildren(...data.data.slice(0, 500).map((v) => el("option", { value: v })));
    } catch {
      /* autocomplete is a convenience */
    }
  }, 150);
  fName.addEventListener("input", loadValues);
  fName.addEventListener("change", loadValues);

  filterForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = fName.value.trim();
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) {
      showError("A label name is letters, digits and _ (not starting with a digit).");
      return;
    }
    if (!state.metric) {
      showError("Pick a metric first: filters narrow a metric's series.");
      return;
    }
    state.filters.push({ name, op: fOp.value, value: fValue.value });
    fName.value = "";
    fValue.value = "";
    filtersChanged();
  });

  function pickMetric(name) {
    state.metric = name;
    state.filters = [];
    renderList();
    renderChips();
    promql.value = name;
    loadLabels();
    run();
  }

  function unitOf(query) {
    const known = state.metrics.filter((m) => new RegExp(`(^|[^a-zA-Z0-9_:])${m.name.replace(/[:]/g, "\\:")}([^a-zA-Z0-9_:]|$)`).test(query));
    if (known.length !== 1) return "";
    if (/\b(rate|irate|increase|delta|idelta|deriv|count|count_over_time|changes|resets)\s*\(/.test(query)) return "";
    return known[0].unit || "";
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  function saveUrl(t) {
    setHashParams("explorer", {
      q: promql.value.trim(),
      metric: state.metric,
      filters: state.filters.length ? JSON.stringify(state.filters) : "",
      range: t.custom ? "" : t.range,
      start: t.custom ? t.start : "",
      end: t.custom ? t.end : "",
      step: t.step,
    });
  }

  async function run() {
    const query = promql.value.trim();
    showError("");
    if (!query) return;
    const t = picker.get();
    if (t.error) {
      showError(t.error);
      return;
    }
    saveUrl(t);
    let { start, end } = t;
    if (state.live) {
      end = Date.now();
      start = end - t.rangeSeconds * 1000;
    }
    state.abort?.abort();
    const abort = new AbortController();
    state.abort = abort;
    title.textContent = query;
    title.title = query;
    const began = performance.now();
    info.textContent = "Loading…";
    try {
      const series = await queryRange(query, start, end, t.stepSeconds, abort.signal);
      if (abort.signal.aborted) return;
      chart.setUnit(unitOf(query));
      chart.fallbackName = query;
      chart.setData(series, { start, end, stepMs: t.stepSeconds * 1000 });
      const points = series.reduce((n, s) => n + s.ts.length, 0);
      info.textContent = `${series.length} series · ${points} points · ${Math.round(performance.now() - began)} ms`;
      if (state.live) startLive(query, t);
    } catch (e) {
      if (e.name === "AbortError") return;
      info.textContent = "";
      chart.setData([], { start, end });
      showError(e.message);
    }
  }

  function stopLive() {
    state.liveClient?.close();
    state.liveClient = null;
    clearInterval(state.poll);
    state.poll = 0;
  }

  function startLive(query, t) {
    stopLive();
    chart.follow(t.rangeSeconds * 1000);
    const sub = selectorSubscription(query, "explorer");
    if (sub) {
      const client = new LiveClient({
        onMetric: (series, samples) => chart.push(series, samples),
        onState: (s, detail) => {
          liveState.textContent = { open: "● Live", connecting: "Connecting…", reconnecting: "Reconnecting…" }[s] || detail || s;
          liveState.dataset.state = s;
        },
      });
      state.liveClient = client;
      client.subscribe(sub);
    } else {
      // Any other PromQL: re-evaluated as time passes.
      liveState.textContent = "● Live (refreshing)";
      liveState.dataset.state = "open";
      state.poll = setInterval(async () => {
        const end = Date.now();
        const start = end - t.rangeSeconds * 1000;
        try {
          const series = await queryRange(query, start, end, t.stepSeconds);
          if (state.live) chart.setData(series, { start, end, stepMs: t.stepSeconds * 1000 });
        } catch (e) {
          showError(e.message);
        }
      }, Math.max(2000, t.stepSeconds * 1000));
    }
  }

  function setLive(on) {
    state.live = on;
    liveBtn.setAttribute("aria-pressed", String(on));
    liveBtn.classList.toggle("on", on);
    liveState.hidden = !on;
    if (!on) {
      stopLive();
      chart.follow(0);
      return;
    }
    run();
  }

  promql.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey || !e.shiftKey)) {
      e.preventDefault();
      state.metric = "";
      state.filters = [];
      renderChips();
      renderList();
      run();
    }
  });

  renderChips();
  try {
    const data = await api("/api/v1/metrics/names");
    state.metrics = data.metrics.sort((a, b) => a.name.localeCompare(b.name));
  } catch (e) {
    showError(e.message);
  }
  renderList();
  if (state.metric) loadLabels();
  if (promql.value.trim()) run();
  else if (state.metrics.length) countNote.textContent += " — pick one to chart it";

  return () => {
    stopLive();
    state.abort?.abort();
    chart.destroy();
  };
}
