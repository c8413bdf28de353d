// Dashboards: a grid of saved panels (a query and a chart each), stored per tenant, editable here.

import { api, queryRange } from "./api.js";
import { LineChart } from "./chart.js";
import { RANGES, autoStep, rangeLabel } from "./timerange.js";
import { el, hashParams, parseDuration, setHashParams, toast } from "./util.js";

function slug(title) {
  const s = title.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 48);
  return s || `dashboard-${Date.now().toString(36)}`;
}

export async function mount(view) {
  let list = [];
  let current = null; // the dashboard shown
  let editing = false;
  let charts = [];
  let timer = 0;

  const picker = el("select", { id: "dash-select", "aria-label": "Dashboard" });
  const rangeSel = el(
    "select",
    { id: "dash-range", "aria-label": "Time range" },
    RANGES.map((r) => el("option", { value: r, text: rangeLabel(r) })),
  );
  const editBtn = el("button", { type: "button", class: "btn", id: "dash-edit", text: "Edit" });
  const newBtn = el("button", { type: "button", class: "btn", id: "dash-new", text: "New dashboard" });
  const bar = el("div", { class: "dash-bar" }, picker, rangeSel, editBtn, newBtn);
  const editor = el("div", { class: "card section", id: "dash-editor", hidden: true });
  const grid = el("div", { class: "panel-grid", id: "panel-grid" });
  const empty = el("p", { class: "card empty", hidden: true });
  view.append(el("div", { class: "page-head" }, el("h1", { text: "Dashboards" }), bar), editor, empty, grid);

  function destroyCharts() {
    charts.forEach((c) => c.destroy());
    charts = [];
  }

  async function loadList() {
    list = (await api("/api/v1/dashboards")).dashboards;
    picker.replaceChildren(...list.map((d) => el("option", { value: d.id, text: d.title })));
    picker.hidden = !list.length;
    rangeSel.hidden = editBtn.hidden = !list.length;
  }

  async function open(id) {
    editing = false;
    if (!id) {
      current = null;
      renderPanels();
      return;
    }
    current = await api(`/api/v1/dashboards/${encodeURIComponent(id)}`);
    picker.value = current.id;
    rangeSel.value = hashParams().range || current.range || "1h";
    setHashParams("dashboards", { id: current.id, range: rangeSel.value !== current.range ? rangeSel.value : "" });
    renderPanels();
  }

  function renderPanels() {
    destroyCharts();
    grid.replaceChildren();
    editor.hidden = !editing;
    editBtn.textContent = editing ? "Done" : "Edit";
    if (!current) {
      empty.hidden = false;
      empty.textContent = list.length ? "Pick a dashboard." : "No dashboards yet. Make one with New dashboard, then add panels: a PromQL query each.";
      return;
    }
    empty.hidden = current.panels.length > 0 || editing;
    empty.textContent = "This dashboard has no panels yet: Edit, then Add panel.";
    if (editing) renderEditor();
    current.panels.forEach((p, i) => {
      const host = el("div", { class: "panel-chart" });
      const info = el("span", { class: "muted small" });
      const card = el(
        "section",
        { class: `card panel${p.width === 2 ? " wide" : ""}`, dataset: { panel: String(i) } },
        el("div", { class: "panel-head" }, el("h2", { class: "panel-title", text: p.title || p.query, title: p.title || p.query }), info),
        el("div", { class: "panel-query", text: p.query, title: p.query }),
        host,
      );
      grid.append(card);
      const chart = new LineChart(host, { unit: p.unit, height: 220 });
      chart.info = info;
      chart.fallbackName = p.title || p.query;
      chart.panel = p;
      charts.push(chart);
    });
    refreshPanels();
  }

  async function refreshPanels() {
    const seconds = parseDuration(rangeSel.value) || 3600;
    const end = Date.now();
    const start = end - seconds * 1000;
    await Promise.all(
      charts.map(async (chart) => {
        const p = chart.panel;
        const step = parseDuration(p.step) || autoStep(seconds, 200);
        try {
          const series = await queryRange(p.query, start, end, step);
          chart.setData(series, { start, end, stepMs: step * 1000 });
          chart.info.textContent = `${series.length} series`;
        } catch (e) {
          chart.setData([], { start, end });
          chart.info.textContent = e.message;
        }
      }),
    );
    clearTimeout(timer);
    const every = current ? current.refresh_seconds : 0;
    if (every > 0) timer = setTimeout(refreshPanels, every * 1000);
  }

  async function save() {
    const body = {
      title: current.title,
      range: current.range || "1h",
      refresh_seconds: current.refresh_seconds ?? 30,
      panels: current.panels,
    };
    current = await api(`/api/v1/dashboards/${encodeURIComponent(current.id)}`, { method: "PUT", body });
    toast("Dashboard saved");
  }

  function renderEditor() {
    const title = el("input", { id: "dash-title", value: current.title });
    const refresh = el("input", { id: "dash-refresh", type: "number", min: "0", value: current.refresh_seconds ?? 30 });
    const pTitle = el("input", { id: "panel-title", placeholder: "CPU by host" });
    const pQuery = el("textarea", { id: "panel-query", rows: "2", spellcheck: "false", placeholder: "avg by (host) (cpu_usage)" });
    const pUnit = el("input", { id: "panel-unit", placeholder: "percent, seconds, bytes…" });
    const pWide = el("input", { type: "checkbox", id: "panel-wide" });
    const error = el("p", { class: "form-error", hidden: true });
    const panelsList = el(
      "ul",
      { class: "panel-editor-list" },
      current.panels.map((p, i) =>
        el(
          "li",
          { class: "row-actions" },
          el("span", { class: "panel-query", text: `${p.title || "(untitled)"} — ${p.query}` }),
          el("button", { type: "button", class: "btn btn-small", text: "↑", "aria-label": "Move up", disabled: i === 0, onclick: () => move(i, -1) }),
          el("button", { type: "button", class: "btn btn-small btn-danger", text: "Remove", onclick: () => remove(i) }),
        ),
      ),
    );
    async function commit(fn) {
      error.hidden = true;
      try {
        fn();
        current.title = title.value.trim() || current.title;
        current.refresh_seconds = Number(refresh.value) || 0;
        await save();
        await loadList();
        picker.value = current.id;
        renderPanels();
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
      }
    }
    const move = (i, d) => commit(() => current.panels.splice(i + d, 0, current.panels.splice(i, 1)[0]));
    const remove = (i) => commit(() => current.panels.splice(i, 1));
    const form = el(
      "form",
      { class: "panel-editor", id: "panel-form" },
      el("h2", { text: "Add panel" }),
      el(
        "div",
        { class: "form-grid" },
        el("label", { class: "field" }, el("span", { text: "Title" }), pTitle),
        el("label", { class: "field" }, el("span", { text: "Unit" }), pUnit),
        el("label", { class: "field check" }, pWide, " Full width"),
      ),
      el("label", { class: "field" }, el("span", { text: "PromQL" }), pQuery),
      el("div", { class: "form-actions" }, el("button", { type: "submit", class: "btn btn-primary", id: "panel-add", text: "Add panel" })),
    );
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (!pQuery.value.trim()) {
        error.textContent = "A panel needs a query.";
        error.hidden = false;
        return;
      }
      commit(() =>
        current.panels.push({ title: pTitle.value.trim(), query: pQuery.value.trim(), unit: pUnit.value.trim(), step: "", width: pWide.checked ? 2 : 1 }),
      );
    });
    editor.replaceChildren(
      el(
        "div",
        { class: "form-grid" },
        el("label", { class: "field" }, el("span", { text: "Dashboard title" }), title),
        el("label", { class: "field" }, el("span", { text: "Refresh every (s, 0: never)" }), refresh),
      ),
      el(
        "div",
        { class: "form-actions" },
        el("button", { type: "button", class: "btn", text: "Save settings", onclick: () => commit(() => {}) }),
        el("button", {
          type: "button",
          class: "btn btn-danger",
          id: "dash-delete",
          text: "Delete dashboard",
          onclick: async (ev) => {
            if (ev.target.dataset.armed !== "1") {
              ev.target.dataset.armed = "1";
              ev.target.textContent = "Confirm delete";
              return;
            }
            await api(`/api/v1/dashboards/${encodeURIComponent(current.id)}`, { method: "DELETE" });
            await loadList();
            await open(list[0]?.id);
          },
        }),
      ),
      current.panels.length ? el("h2", { class: "section-title", text: "Panels" }) : null,
      panelsList,
      form,
      error,
    );
  }

  picker.addEventListener("change", () => open(picker.value));
  rangeSel.addEventListener("change", () => {
    setHashParams("dashboards", { id: current?.id, range: rangeSel.value });
    refreshPanels();
  });
  editBtn.addEventListener("click", () => {
    editing = !editing;
    renderPanels();
  });
  newBtn.addEventListener("click", async () => {
    const base = "New dashboard";
    let title = base;
    for (let n = 2; list.some((d) => d.title === title); n++) title = `${base} ${n}`;
    current = { id: slug(title), title, range: "1h", refresh_seconds: 30, panels: [] };
    try {
      await save();
      await loadList();
      picker.value = current.id;
      editing = true;
      renderPanels();
      document.getElementById("dash-title")?.select();
    } catch (e) {
      toast(e.message, "error");
    }
  });

  try {
    await loadList();
    const want = hashParams().id;
    await open(list.some((d) => d.id === want) ? want : list[0]?.id);
  } catch (e) {
    empty.hidden = false;
    empty.textContent = e.message;
  }
  return () => {
    clearTimeout(timer);
    destroyCharts();
  };
}
