// The time range picker (last 5 m ... 30 d, or custom) and the step, shared by explorer and dashboards.

import { el, formatDuration, parseDuration, toLocalInput } from "./util.js";

export const RANGES = ["5m", "15m", "30m", "1h", "3h", "6h", "12h", "24h", "2d", "7d", "30d"];
const NICE_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

/** A step giving about `points` points over `seconds`. */
export function autoStep(seconds, points = 300) {
  const raw = seconds / points;
  return NICE_STEPS.find((s) => s >= raw) || 86400;
}

export function rangeLabel(r) {
  return `Last ${formatDuration(parseDuration(r)).replace(/(\d+)([a-z])/g, "$1 $2 ").trim()}`;
}

/**
 * @param {{range?: string, start?: number, end?: number, step?: string, onChange: Function, withStep?: boolean}} opts
 * `get()` answers {start, end, stepSeconds, rangeSeconds, custom, range, step}.
 */
export function timeRangePicker(opts) {
  const select = el(
    "select",
    { class: "range-select", "aria-label": "Time range", id: opts.idPrefix ? `${opts.idPrefix}-range` : undefined },
    RANGES.map((r) => el("option", { value: r, text: rangeLabel(r) })),
    el("option", { value: "custom", text: "Custom…" }),
  );
  const from = el("input", { type: "datetime-local", step: "1", class: "dt", "aria-label": "From" });
  const to = el("input", { type: "datetime-local", step: "1", class: "dt", "aria-label": "To" });
  const custom = el("span", { class: "custom-range" }, from, el("span", { class: "muted", text: "to" }), to);
  const step = el("input", {
    class: "step-input",
    "aria-label": "Step",
    placeholder: "auto",
    size: "6",
    title: "Resolution: seconds or a duration like 30s, 5m; empty for automatic",
  });
  const stepWrap = el("label", { class: "step-wrap" }, el("span", { class: "muted", text: "Step" }), step);
  const root = el("div", { class: "timerange" }, select, custom, opts.withStep === false ? null : stepWrap);

  const now = Date.now();
  if (opts.start && opts.end) {
    select.value = "custom";
    from.value = toLocalInput(opts.start);
    to.value = toLocalInput(opts.end);
  } else {
    select.value = RANGES.includes(opts.range) ? opts.range : "1h";
    from.value = toLocalInput(now - 3600e3);
    to.value = toLocalInput(now);
  }
  step.value = opts.step || "";
  const sync = () => {
    custom.hidden = select.value !== "custom";
  };
  sync();
  select.addEventListener("change", () => {
    if (select.value === "custom") {
      const t = Date.now();
      const len = (get().rangeSeconds || 3600) * 1000;
      from.value = toLocalInput(t - len);
      to.value = toLocalInput(t);
    }
    sync();
    opts.onChange?.();
  });
  for (const input of [from, to]) input.addEventListener("change", () => opts.onChange?.());
  step.addEventListener("change", () => opts.onChange?.());

  let lastRange = select.value === "custom" ? 3600 : parseDuration(select.value);
  function get() {
    let start;
    let end;
    if (select.value === "custom") {
      start = new Date(from.value).getTime();
      end = new Date(to.value).getTime();
      if (!Number.isFinite(start) || !Number.isFinite(end) || end <= start) {
        return { error: "Pick a custom range whose end is after its start." };
      }
    } else {
      end = Date.now();
      lastRange = parseDuration(select.value);
      start = end - lastRange * 1000;
    }
    const rangeSeconds = (end - start) / 1000;
    const typed = step.value.trim();
    const stepSeconds = typed ? parseDuration(typed) : autoStep(rangeSeconds);
    if (!Number.isFinite(stepSeconds) || stepSeconds <= 0) return { error: `Step ${JSON.stringify(typed)} is not a duration.` };
    step.placeholder = `auto (${formatDuration(autoStep(rangeSeconds))})`;
    return {
      start,
      end,
      rangeSeconds,
      stepSeconds,
      custom: select.value === "custom",
      range: select.value,
      step: typed,
    };
  }
  get();
  return { root, get, select, from, to, step };
}
