// A line chart on <canvas>: time axis, value axis with units, legend, hover values, live scrolling.
// Thousands of points per series are reduced to min/max per pixel column before drawing.

import { el, formatTime, formatValue, seriesKey, seriesName } from "./util.js";

const PALETTE = [
  "#2f6fdb", "#e2622b", "#1f9d55", "#c23a82", "#8a5cd1", "#c7a10a",
  "#0e9aa7", "#d64545", "#5a7d2a", "#7b6a58", "#3d4eb8", "#b35c00",
];
export function colorFor(i) {
  if (i < PALETTE.length) return PALETTE[i];
  return `hsl(${Math.round((i * 137.508) % 360)}, 62%, 45%)`;
}

const TIME_STEPS = [
  1e3, 2e3, 5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3, 900e3, 1800e3,
  3600e3, 7200e3, 10800e3, 21600e3, 43200e3, 86400e3, 172800e3, 604800e3,
];
const MAX_POINTS_PER_SERIES = 20000;
const LIVE_MIN_FRAME_MS = 100; // at most 10 frames per second while live

function niceStep(range, count) {
  const raw = range / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

function lowerBound(arr, from, to, value) {
  let lo = from;
  let hi = to;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class LineChart {
  /**
   * @param {HTMLElement} host
   * @param {{unit?: string, height?: number, legend?: boolean, emptyText?: string}} options
   */
  constructor(host, options = {}) {
    this.host = host;
    this.unit = options.unit || "";
    this.height = options.height || 320;
    this.emptyText = options.emptyText || "No data in this time range";
    this.fallbackName = ""; // the name of a series without labels (an aggregate): the query
    this.series = [];
    this.byKey = new Map();
    this.start = Date.now() - 3600e3;
    this.end = Date.now();
    this.gapMs = 0;
    this.followMs = 0; // > 0: live, the window ends now
    this.frame = 0;
    this.lastDraw = 0;
    this.pending = 0;
    this.legendDirty = true;
    this.lastLegend = -Infinity;
    this.hoverX = null;
    this.draws = 0;

    this.root = el("div", { class: "chart" });
    this.canvas = el("canvas", { class: "chart-canvas", role: "img", "aria-label": "line chart" });
    this.overlay = el("canvas", { class: "chart-overlay", "aria-hidden": "true" });
    this.tip = el("div", { class: "chart-tip", hidden: true });
    this.stage = el("div", { class: "chart-stage" }, this.canvas, this.overlay, this.tip);
    this.legend = options.legend === false ? null : el("ul", { class: "chart-legend" });
    this.root.append(this.stage);
    if (this.legend) this.root.append(this.legend);
    host.append(this.root);
    this.stage.style.height = `${this.height}px`;

    this.onMove = (e) => {
      const rect = this.stage.getBoundingClientRect();
      this.hoverX = e.clientX - rect.left;
      this.drawOverlay();
    };
    this.onLeave = () => {
      this.hoverX = null;
      this.drawOverlay();
    };
    this.stage.addEventListener("pointermove", this.onMove);
    this.stage.addEventListener("pointerleave", this.onLeave);
    this.resizeObserver = new ResizeObserver(() => this.requestRender(true));
    this.resizeObserver.observe(this.stage);
  }

  destroy() {
    this.resizeObserver.disconnect();
    cancelAnimationFrame(this.frame);
    clearTimeout(this.pending);
    clearInterval(this.ticker);
    this.root.remove();
    this.series = [];
    this.byKey.clear();
  }

  setUnit(unit) {
    this.unit = unit || "";
    this.legendDirty = true;
    this.requestRender();
  }

  /** Replace the data: [{metric, ts: [ms], vs: [number]}], shown over [start, end]. */
  setData(list, { start, end, stepMs = 0 } = {}) {
    this.series = [];
    this.byKey.clear();
    list.forEach((s) => this.addSeries(s.metric, s.ts.slice(), s.vs.slice()));
    if (start !== undefined) this.start = start;
    if (end !== undefined) this.end = end;
    this.gapMs = stepMs > 0 ? stepMs * 2.5 : 0;
    this.rebuildLegend();
    this.requestRender(true);
  }

  addSeries(metric, ts = [], vs = []) {
    const s = {
      key: seriesKey(metric),
      name: Object.keys(metric).length ? seriesName(metric) : this.fallbackName || "{}",
      metric,
      color: colorFor(this.series.length),
      ts,
      vs,
      head: 0,
      hidden: false,
      item: null,
    };
    this.series.push(s);
    this.byKey.set(s.key, s);
    return s;
  }

  /** Follow the present: the window is the last `ms` milliseconds and scrolls. 0 stops. */
  follow(ms) {
    this.followMs = ms;
    clearInterval(this.ticker);
    if (ms > 0) {
      // A quiet series still scrolls: a few frames a second, more when samples arrive.
      this.ticker = setInterval(() => this.requestRender(), Math.max(250, Math.min(5000, ms / 600)));
    }
    this.requestRender();
  }

  /** Append live samples of one series (created when new). */
  push(metric, samples) {
    const key = seriesKey(metric);
    let s = this.byKey.get(key);
    if (!s) {
      s = this.addSeries(metric);
      this.rebuildLegend();
    }
    for (const [t, v] of samples) {
      const n = s.ts.length;
      if (n > s.head && t <= s.ts[n - 1]) {
        if (t === s.ts[n - 1]) s.vs[n - 1] = v; // a rewrite of the newest point
        continue; // older than what we show: the range query had it already
      }
      s.ts.push(t);
      s.vs.push(v);
    }
    this.trim(s);
    this.legendDirty = true;
    this.requestRender();
  }

  trim(s) {
    const keepFrom = this.followMs > 0 ? Date.now() - this.followMs * 1.1 : -Infinity;
    const n = s.ts.length;
    while (s.head < n && (s.ts[s.head] < keepFrom || n - s.head > MAX_POINTS_PER_SERIES)) s.head++;
    if (s.head > 1024 && s.head * 2 > n) {
      s.ts.splice(0, s.head);
      s.vs.splice(0, s.head);
      s.head = 0;
    }
  }

  requestRender(force = false) {
    if (this.frame || this.pending) return;
    const wait = this.followMs > 0 && !force ? LIVE_MIN_FRAME_MS - (performance.now() - this.lastDraw) : 0;
    if (wait > 0) {
      this.pending = setTimeout(() => {
        this.pending = 0;
        this.requestRender(true);
      }, wait);
      return;
    }
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  visibleRange(s) {
    const from = Math.max(s.head, lowerBound(s.ts, s.head, s.ts.length, this.start) - 1);
    const to = Math.min(s.ts.length, lowerBound(s.ts, from, s.ts.length, this.end + 1) + 1);
    return [from, to];
  }

  render() {
    this.lastDraw = performance.now();
    if (this.followMs > 0) {
      this.end = Date.now();
      this.start = this.end - this.followMs;
      for (const s of this.series) this.trim(s);
    }
    const width = this.stage.clientWidth;
    const height = this.stage.clientHeight;
    if (!width || !height) return;
    const dpr = window.devicePixelRatio || 1;
    for (const c of [this.canvas, this.overlay]) {
      if (c.width !== Math.round(width * dpr) || c.height !== Math.round(height * dpr)) {
        c.width = Math.round(width * dpr);
        c.height = Math.round(height * dpr);
        c.style.width = `${width}px`;
        c.style.height = `${height}px`;
      }
    }
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const styles = getComputedStyle(this.root);
    const ink = styles.getPropertyValue("--chart-ink").trim() || "#555";
    const grid = styles.getPropertyValue("--chart-grid").trim() || "#e5e5e5";
    ctx.font = "11px system-ui, -apple-system, Segoe UI, Roboto, sans-serif";

    // Value range over what is visible.
    let lo = Infinity;
    let hi = -Infinity;
    let points = 0;
    for (const s of this.series) {
      const [from, to] = this.visibleRange(s);
      let count = 0;
      for (let i = from; i < to; i++) {
        const t = s.ts[i];
        if (t < this.start || t > this.end) continue;
        count++;
        if (s.hidden) continue;
        const v = s.vs[i];
        if (!Number.isFinite(v)) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      s.visiblePoints = count;
      points += count;
    }
    this.root.dataset.series = String(this.series.length);
    this.root.dataset.points = String(points);
    this.drawn = { series: this.series.filter((s) => s.visiblePoints > 0).length, points };
    const empty = lo === Infinity;
    if (empty) {
      lo = 0;
      hi = 1;
    } else if (lo === hi) {
      const pad = Math.abs(lo) * 0.1 || 1;
      lo -= pad;
      hi += pad;
    } else if (lo > 0 && lo < (hi - lo) * 0.5) {
      lo = 0; // start at zero when the data is close to it anyway
    }
    const rows = Math.max(2, Math.floor(height / 48));
    const yStep = niceStep(hi - lo, rows);
    const yMin = Math.floor(lo / yStep) * yStep;
    const yMax = Math.ceil(hi / yStep) * yStep;
    const yTicks = [];
    for (let v = yMin; v <= yMax + yStep / 2; v += yStep) yTicks.push(Math.abs(v) < yStep / 1e6 ? 0 : v);
    const yLabels = yTicks.map((v) => formatValue(v, this.unit));
    const left = Math.ceil(Math.max(...yLabels.map((t) => ctx.measureText(t).width))) + 12;
    const plot = { x: left, y: 8, w: Math.max(10, width - left - 12), h: Math.max(10, height - 8 - 24) };
    this.plot = plot;
    const px = (t) => plot.x + ((t - this.start) / (this.end - this.start || 1)) * plot.w;
    const py = (v) => plot.y + plot.h - ((v - yMin) / (yMax - yMin || 1)) * plot.h;
    this.px = px;
    this.py = py;

    // Grid and axes.
    ctx.strokeStyle = grid;
    ctx.lineWidth = 1;
    ctx.fillStyle = ink;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.beginPath();
    yTicks.forEach((v, i) => {
      const y = Math.round(py(v)) + 0.5;
      ctx.moveTo(plot.x, y);
      ctx.lineTo(plot.x + plot.w, y);
      ctx.fillText(yLabels[i], plot.x - 6, y);
    });
    const span = this.end - this.start;
    const maxTicks = Math.max(2, Math.floor(plot.w / 90));
    const tStep = TIME_STEPS.find((st) => span / st <= maxTicks) || TIME_STEPS[TIME_STEPS.length - 1];
    const offset = -new Date(this.start).getTimezoneOffset() * 60000;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let t = Math.ceil((this.start + offset) / tStep) * tStep - offset; t <= this.end; t += tStep) {
      const x = Math.round(px(t)) + 0.5;
      ctx.moveTo(x, plot.y);
      ctx.lineTo(x, plot.y + plot.h);
      const d = new Date(t);
      const label =
        tStep >= 86400e3
          ? `${d.getMonth() + 1}/${d.getDate()}`
          : formatTime(t, false).slice(0, tStep < 60e3 ? 8 : 5);
      const w = ctx.measureText(label).width / 2;
      if (x - w >= 0 && x + w <= width) ctx.fillText(label, x, plot.y + plot.h + 6);
    }
    ctx.stroke();

    // Lines.
    ctx.save();
    ctx.beginPath();
    ctx.rect(plot.x, plot.y - 2, plot.w, plot.h + 4);
    ctx.clip();
    ctx.lineWidth = 1.5;
    ctx.lineJoin = "round";
    for (const s of this.series) {
      if (s.hidden) continue;
      this.drawSeries(ctx, s, px, py, plot);
    }
    ctx.restore();
    if (empty && this.emptyText) {
      ctx.fillStyle = ink;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(this.emptyText, plot.x + plot.w / 2, plot.y + plot.h / 2);
    }
    this.root.dataset.message = empty ? this.emptyText : "";
    this.root.dataset.span = String(this.end - this.start);
    this.draws++;
    this.root.dataset.draws = String(this.draws);
    if (this.draws === 1) performance.mark("rtpm:chart-drawn");
    this.onRender?.(this.drawn);
    const now = performance.now();
    if (this.legendDirty && now - this.lastLegend > 400) this.updateLegend();
    else if (this.legendDirty) this.requestRender();
    this.drawOverlay();
  }

  drawSeries(ctx, s, px, py, plot) {
    const [from, to] = this.visibleRange(s);
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.beginPath();
    let open = false;
    let col = NaN;
    let colMin = 0;
    let colMax = 0;
    let colLast = 0;
    let prevT = -Infinity;
    const flush = () => {
      if (!Number.isNaN(col)) {
        ctx.lineTo(col, colMin);
        ctx.lineTo(col, colMax);
        ctx.lineTo(col, colLast);
      }
      col = NaN;
    };
    for (let i = from; i < to; i++) {
      const t = s.ts[i];
      const v = s.vs[i];
      if (!Number.isFinite(v) || (this.gapMs && t - prevT > this.gapMs)) {
        flush();
        open = false;
      }
      prevT = t;
      if (!Number.isFinite(v)) continue;
      const x = px(t);
      const y = py(v);
      const c = Math.round(x);
      if (!open) {
        ctx.moveTo(x, y);
        open = true;
        col = c;
        colMin = colMax = colLast = y;
        continue;
      }
      if (c === col) {
        if (y < colMin) colMin = y;
        if (y > colMax) colMax = y;
        colLast = y;
        continue;
      }
      flush();
      ctx.lineTo(x, y);
      col = c;
      colMin = colMax = colLast = y;
    }
    flush();
    ctx.stroke();
    if ((s.visiblePoints || 0) * 8 < plot.w) {
      for (let i = from; i < to; i++) {
        const t = s.ts[i];
        const v = s.vs[i];
        if (!Number.isFinite(v) || t < this.start || t > this.end) continue;
        ctx.beginPath();
        ctx.arc(px(t), py(v), 2.2, 0, Math.PI * 2);
        ctx.fill();
      }
    }
  }

  drawOverlay() {
    const ctx = this.overlay.getContext("2d");
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, this.overlay.width, this.overlay.height);
    const plot = this.plot;
    if (this.hoverX === null || !plot || this.hoverX < plot.x || this.hoverX > plot.x + plot.w) {
      this.tip.hidden = true;
      return;
    }
    const t = this.start + ((this.hoverX - plot.x) / plot.w) * (this.end - this.start);
    const tolerance = Math.max(this.gapMs, ((this.end - this.start) / plot.w) * 24);
    const rows = [];
    let at = null;
    for (const s of this.series) {
      if (s.hidden) continue;
      const [from, to] = this.visibleRange(s);
      let i = lowerBound(s.ts, from, to, t);
      if (i >= to || (i > from && t - s.ts[i - 1] < s.ts[i] - t)) i -= 1;
      if (i < from || i >= to || Math.abs(s.ts[i] - t) > tolerance) continue;
      rows.push({ s, t: s.ts[i], v: s.vs[i] });
      if (at === null || Math.abs(s.ts[i] - t) < Math.abs(at - t)) at = s.ts[i];
    }
    if (!rows.length) {
      this.tip.hidden = true;
      return;
    }
    const x = this.px(at);
    ctx.strokeStyle = "rgba(0,0,0,0.35)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(Math.round(x) + 0.5, plot.y);
    ctx.lineTo(Math.round(x) + 0.5, plot.y + plot.h);
    ctx.stroke();
    for (const r of rows) {
      if (!Number.isFinite(r.v)) continue;
      ctx.fillStyle = r.s.color;
      ctx.beginPath();
      ctx.arc(this.px(r.t), this.py(r.v), 3.5, 0, Math.PI * 2);
      ctx.fill();
    }
    rows.sort((a, b) => (b.v || 0) - (a.v || 0));
    const shown = rows.slice(0, 10);
    this.tip.replaceChildren(
      el("div", { class: "chart-tip-time", text: formatTime(at) }),
      ...shown.map((r) => {
        const sw = el("span", { class: "swatch" });
        sw.style.background = r.s.color;
        return el(
          "div",
          { class: "chart-tip-row" },
          sw,
          el("span", { class: "chart-tip-name", text: r.s.name }),
          el("b", { text: formatValue(r.v, this.unit) }),
        );
      }),
      ...(rows.length > shown.length ? [el("div", { class: "muted", text: `+${rows.length - shown.length} more` })] : []),
    );
    this.tip.hidden = false;
    const tipW = this.tip.offsetWidth;
    const left = x + 12 + tipW > plot.x + plot.w ? Math.max(0, x - 12 - tipW) : x + 12;
    this.tip.style.left = `${left}px`;
    this.tip.style.top = `${plot.y + 4}px`;
  }

  rebuildLegend() {
    if (!this.legend) return;
    this.legend.replaceChildren();
    for (const s of this.series) {
      const sw = el("span", { class: "swatch" });
      sw.style.background = s.color;
      const value = el("span", { class: "legend-value" });
      s.item = el(
        "li",
        {
          class: "legend-item",
          title: "Click to hide or show",
          dataset: { key: s.key },
          onclick: () => {
            s.hidden = !s.hidden;
            s.item.classList.toggle("off", s.hidden);
            this.requestRender(true);
          },
        },
        sw,
        el("span", { class: "legend-name", text: s.name }),
        value,
      );
      s.valueEl = value;
      this.legend.append(s.item);
    }
    this.legendDirty = true;
    this.lastLegend = -Infinity;
  }

  /** Per series, over what is shown: name, labels, last value and time, min, max, average, points. */
  summary() {
    return this.series.map((s) => {
      const [from, to] = this.visibleRange(s);
      let n = 0;
      let m = 0;
      let sum = 0;
      let lo = Infinity;
      let hi = -Infinity;
      let last = null;
      let lastT = null;
      for (let i = from; i < to; i++) {
        const t = s.ts[i];
        if (t < this.start || t > this.end) continue;
        const v = s.vs[i];
        n++;
        last = v;
        lastT = t;
        if (!Number.isFinite(v)) continue;
        sum += v;
        m++;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const finite = Number.isFinite(lo);
      return {
        name: s.name,
        metric: s.metric,
        color: s.color,
        points: n,
        last,
        lastT,
        min: finite ? lo : null,
        max: finite ? hi : null,
        avg: m ? sum / m : null,
      };
    });
  }

  updateLegend() {
    this.lastLegend = performance.now();
    this.legendDirty = false;
    if (!this.legend) return;
    for (const s of this.series) {
      if (!s.item) continue;
      const n = s.ts.length;
      let last = null;
      for (let i = n - 1; i >= s.head; i--) {
        if (s.ts[i] <= this.end) {
          last = s.vs[i];
          break;
        }
      }
      const text = last === null ? "–" : formatValue(last, this.unit);
      if (s.valueEl.textContent !== text) s.valueEl.textContent = text;
      const pts = String(s.visiblePoints || 0);
      if (s.item.dataset.points !== pts) s.item.dataset.points = pts;
      if (last !== null && s.item.dataset.last !== String(last)) s.item.dataset.last = String(last);
    }
  }
}
