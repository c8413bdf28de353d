// Explorer: pick a metric (searchable, with type, unit, help), filter by labels, or type PromQL
// (with autocomplete of metric names, label names and values); a time range and step; a chart or
// a table; live mode over the WebSocket, following the present on a short window. The last query
// is kept (localStorage) and comes back when the explorer is opened without one.

import { api, queryRange } from "./api.js";
import { LineChart } from "./chart.js";
import { attachCompletion } from "./complete.js";
import { LiveClient, selectorSubscription } from "./live.js";
import { timeRangePicker } from "./timerange.js";
import { debounce, el, formatTime, formatValue, hashParams, setHashParams } from "./util.js";

const OPS = ["=", "!=", "=~", "!~"];
const MAX_LISTED = 300;
const LAST_QUERY_KEY = "rtpm.explorer.last";
// Live mode follows the present on at most this window, so new samples spread across the chart
// instead of piling up at the right edge of a long axis.
export const LIVE_WINDOW_SECONDS = 300;

function lastQuery() {
  try {
    const saved = JSON.parse(localStorage.getItem(LAST_QUERY_KEY) || "null");
    return saved && typeof saved === "object" ? saved : null;
  } catch {
    return null;
  }
}

function quote(v) {
  return JSON.stringify(v);
}

export function buildSelector(metric, filters) {
  const inner = filters.map((f) => `${f.name}${f.op}${quote(f.value)}`).join(", ");
  return inner ? `${metric}{${inner}}` : metric;
}

export async function mount(view) {
  let params = hashParams();
  if (!params.q && !params.metric) params = { ...(lastQuery() || {}), ...params };
  const state = {
    metrics: [],
    metric: params.metric || "",
    filters: [],
    live: false,
    liveClient: null,
    poll: 0,
    abort: null,
    display: params.view === "table" ? "table" : "chart",
    error: false,
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
  const filterScope = el("p", { class: "muted small filter-scope", id: "filter-scope" });
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
    filterScope,
    el("div", { class: "promql-wrap" }, promql),
    el("div", { class: "controls" }, picker.root, el("div", { class: "controls-end" }, liveBtn, runBtn)),
  );

  // -- the chart -------------------------------------------------------------------------------
  const title = el("h2", { class: "chart-title", text: "Pick a metric or type a query" });
  const info = el("span", { class: "muted small", id: "chart-info" });
  const liveState = el("span", { class: "live-state", id: "live-state", hidden: true });
  const errorBox = el("p", { class: "form-error", id: "query-error", role: "alert", hidden: true });
  const chartHost = el("div", { id: "chart" });
  const tableHost = el("div", { id: "result-table", class: "result-table table-wrap", hidden: true });
  const viewBtn = (name, label) =>
    el("button", {
      type: "button",
      class: "btn btn-tab",
      id: `show-${name}`,
      role: "tab",
      text: label,
      "aria-selected": "false",
      onclick: () => setDisplay(name),
    });
  const showChart = viewBtn("chart", "Chart");
  const showTable = viewBtn("table", "Table");
  const tabs = el("div", { class: "view-tabs", role: "tablist", "aria-label": "Show as" }, showChart, showTable);
  const chartCard = el(
    "section",
    { class: "card chart-card" },
    el("div", { class: "chart-head" }, title, el("div", { class: "chart-head-end" }, liveState, info, tabs)),
    errorBox,
    chartHost,
    tableHost,
  );
  const chart = new LineChart(chartHost, { height: window.innerWidth < 640 ? 260 : 340 });
  const EMPTY_TEXT = chart.emptyText;
  chart.emptyText = ""; // nothing asked yet: no "No data" either
  let began = 0;
  chart.onRender = (drawn) => {
    // the header counts what is drawn, live samples included
    if (state.error || !began) return;
    const text = `${drawn.series} series · ${drawn.points} points${state.live ? " · live" : ` · ${began} ms`}`;
    if (info.textContent !== text) info.textContent = text;
    if (state.display === "table" && state.live) renderTableSoon();
  };

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
    renderScope();
  }

  function renderScope() {
    const typed = promql.value.trim();
    const applied = state.metric && typed === buildSelector(state.metric, state.filters);
    filterScope.dataset.applies = applied ? "true" : "false";
    filterScope.textContent = applied
      ? `Filters narrow ${state.metric} and are written into the query below.`
      : typed
        ? "Filters do not apply to a typed query: it runs as written. Pick a metric to filter it."
        : "Pick a metric to filter its series by label.";
    chips.classList.toggle("inactive", !applied && state.filters.length > 0);
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
      view: state.display === "table" ? "table" : "",
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
    let stepSeconds = t.stepSeconds;
    if (state.live) {
      // the present, on a short window, at a step fine enough to show the samples as they come
      const liveWindow = Math.min(t.rangeSeconds, LIVE_WINDOW_SECONDS);
      end = Date.now();
      start = end - liveWindow * 1000;
      stepSeconds = Math.min(stepSeconds, Math.max(1, Math.round(liveWindow / 300)));
    }
    state.abort?.abort();
    const abort = new AbortController();
    state.abort = abort;
    title.textContent = query;
    title.title = query;
    renderScope();
    const t0 = performance.now();
    info.textContent = "Loading…";
    began = 0;
    try {
      const series = await queryRange(query, start, end, stepSeconds, abort.signal);
      if (abort.signal.aborted) return;
      state.error = false;
      chart.emptyText = EMPTY_TEXT;
      began = Math.max(1, Math.round(performance.now() - t0));
      chart.setUnit(unitOf(query));
      chart.fallbackName = query;
      chart.setData(series, { start, end, stepMs: stepSeconds * 1000 });
      saveLast(t);
      if (state.live) startLive(query, t, stepSeconds);
      renderTable();
    } catch (e) {
      if (e.name === "AbortError") return;
      // an error is not "no data": the chart is left blank under the message
      state.error = true;
      info.textContent = "";
      chart.emptyText = "";
      chart.setData([], { start, end });
      renderTable();
      showError(e.message);
    }
  }

  function saveLast(t) {
    const saved = {
      q: promql.value.trim(),
      metric: state.metric,
      filters: state.filters.length ? JSON.stringify(state.filters) : "",
      range: t.custom ? "" : t.range,
      step: t.step,
      view: state.display === "table" ? "table" : "",
    };
    try {
      localStorage.setItem(LAST_QUERY_KEY, JSON.stringify(saved));
    } catch {
      /* private mode: nothing kept */
    }
  }

  // -- the table view --------------------------------------------------------------------------
  let tableTimer = 0;
  function renderTableSoon() {
    if (!tableTimer) tableTimer = setTimeout(() => ((tableTimer = 0), renderTable()), 500);
  }

  function renderTable() {
    if (state.display !== "table") return;
    const rows = chart.summary();
    const unit = chart.unit;
    const fmt = (v) => (v === null || v === undefined ? "–" : formatValue(v, unit));
    if (state.error || !rows.length) {
      tableHost.replaceChildren(
        el("p", { class: "muted pad-x", text: state.error ? "" : "No series in this time range" }),
      );
      return;
    }
    const head = el(
      "tr",
      {},
      ["Series", "Last", "At", "Min", "Avg", "Max", "Points"].map((h) => el("th", { scope: "col", text: h })),
    );
    const body = rows.map((r) => {
      const sw = el("span", { class: "swatch" });
      sw.style.background = r.color;
      return el(
        "tr",
        { dataset: { points: String(r.points), last: r.last === null ? "" : String(r.last) } },
        el("td", { class: "series-cell" }, sw, el("span", { text: r.name, title: r.name })),
        el("td", { class: "num", text: fmt(r.last) }),
        el("td", { class: "num", text: r.lastT === null ? "–" : formatTime(r.lastT) }),
        el("td", { class: "num", text: fmt(r.min) }),
        el("td", { class: "num", text: fmt(r.avg) }),
        el("td", { class: "num", text: fmt(r.max) }),
        el("td", { class: "num", text: String(r.points) }),
      );
    });
    tableHost.replaceChildren(
      el("table", { class: "table" }, el("thead", {}, head), el("tbody", {}, body)),
    );
  }

  function setDisplay(name) {
    state.display = name;
    const table = name === "table";
    chartHost.hidden = table;
    tableHost.hidden = !table;
    showChart.setAttribute("aria-selected", String(!table));
    showTable.setAttribute("aria-selected", String(table));
    showChart.classList.toggle("on", !table);
    showTable.classList.toggle("on", table);
    if (!table) chart.requestRender(true);
    renderTable();
    const t = picker.get();
    if (!t.error) {
      saveUrl(t);
      if (promql.value.trim()) saveLast(t);
    }
  }

  function stopLive() {
    state.liveClient?.close();
    state.liveClient = null;
    clearInterval(state.poll);
    state.poll = 0;
  }

  function startLive(query, t, stepSeconds) {
    stopLive();
    const windowSeconds = Math.min(t.rangeSeconds, LIVE_WINDOW_SECONDS);
    chart.follow(windowSeconds * 1000);
    const sub = selectorSubscription(query, "explorer");
    if (sub) {
      const client = new LiveClient({
        onMetric: (series, samples) => chart.push(series, samples),
        onState: (s, detail) => {
          const open = `● Live · last ${Math.round(windowSeconds / 60) || 1} min`;
          liveState.textContent = { open, connecting: "Connecting…", reconnecting: "Reconnecting…" }[s] || detail || s;
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
        const start = end - windowSeconds * 1000;
        try {
          const series = await queryRange(query, start, end, stepSeconds);
          if (state.live) chart.setData(series, { start, end, stepMs: stepSeconds * 1000 });
        } catch (e) {
          showError(e.message);
        }
      }, Math.max(2000, stepSeconds * 1000));
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

  attachCompletion(promql, {
    metrics: () => state.metrics.map((m) => m.name),
    labelNames: async (metric) => {
      const data = await api("/api/v1/labels", { query: metric ? { "match[]": metric } : {} });
      return data.data;
    },
    labelValues: async (metric, label) => {
      const query = metric ? { "match[]": metric } : {};
      const data = await api(`/api/v1/label/${encodeURIComponent(label)}/values`, { query });
      return data.data.slice(0, 1000);
    },
  });
  promql.addEventListener("input", () => renderScope());

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
  setDisplay(state.display);
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
