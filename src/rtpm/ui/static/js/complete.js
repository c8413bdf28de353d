// Autocomplete in the PromQL box: metric names (and PromQL functions) where a name is typed, label
// names inside a selector's braces, label values inside a matcher's quotes. Arrow keys move, Tab or
// Enter takes the highlighted suggestion, Escape closes the list.

import { debounce, el } from "./util.js";

const FUNCTIONS = [
  "abs", "absent", "avg", "avg_over_time", "bottomk", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
  "count", "count_over_time", "delta", "deriv", "floor", "histogram_quantile", "idelta", "increase", "irate",
  "label_replace", "last_over_time", "max", "max_over_time", "min", "min_over_time", "predict_linear",
  "quantile", "quantile_over_time", "rate", "resets", "round", "sort", "sort_desc", "stddev", "sum",
  "sum_over_time", "time", "timestamp", "topk", "vector",
];
const MAX_SHOWN = 12;

/**
 * What is being typed at `pos` in `text`:
 * {kind: "metric"|"label"|"value", prefix, from, metric?, label?} or null.
 */
export function completionContext(text, pos) {
  const before = text.slice(0, pos);
  // inside a selector's braces? the last "{" not closed before the cursor
  const open = before.lastIndexOf("{");
  if (open > before.lastIndexOf("}")) {
    const metric = (/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*$/.exec(before.slice(0, open)) || [])[1] || "";
    const inner = before.slice(open + 1);
    const value = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)$/.exec(inner);
    if (value) return { kind: "value", prefix: value[3], from: pos - value[3].length, metric, label: value[1] };
    const name = /(?:^|,)\s*([a-zA-Z_][a-zA-Z0-9_]*)?$/.exec(inner);
    if (name) {
      const prefix = name[1] || "";
      return { kind: "label", prefix, from: pos - prefix.length, metric };
    }
    return null;
  }
  if (/"[^"]*$/.test(before.replace(/"(?:[^"\\]|\\.)*"/g, ""))) return null; // inside a string
  const word = /([a-zA-Z_:][a-zA-Z0-9_:]*)$/.exec(before);
  if (!word) return null;
  if (/\[[^\]]*$/.test(before)) return null; // a range like [5m]
  return { kind: "metric", prefix: word[1], from: pos - word[1].length };
}

/**
 * @param {HTMLTextAreaElement} input
 * @param {{metrics: () => string[], labelNames: (metric: string) => Promise<string[]>,
 *          labelValues: (metric: string, label: string) => Promise<string[]>}} source
 */
export function attachCompletion(input, source) {
  const list = el("ul", { class: "suggest", id: "promql-suggest", role: "listbox", "aria-label": "Suggestions", hidden: true });
  input.setAttribute("aria-controls", "promql-suggest");
  input.setAttribute("aria-autocomplete", "list");
  input.insertAdjacentElement("afterend", list);
  let items = [];
  let active = 0;
  let ctx = null;
  let seq = 0;

  function close() {
    list.hidden = true;
    items = [];
    input.setAttribute("aria-expanded", "false");
  }

  function show(found) {
    items = found.slice(0, MAX_SHOWN);
    active = 0;
    if (!items.length) {
      close();
      return;
    }
    list.replaceChildren(
      ...items.map((s, i) =>
        el(
          "li",
          {
            class: `suggest-item${i === active ? " active" : ""}`,
            role: "option",
            "aria-selected": i === active ? "true" : "false",
            dataset: { value: s.value, kind: s.kind },
            onmousedown: (e) => {
              e.preventDefault(); // keep the focus in the box
              accept(i);
            },
          },
          el("span", { class: "suggest-text", text: s.value }),
          el("span", { class: "suggest-kind muted small", text: s.note }),
        ),
      ),
    );
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
  }

  function highlight(i) {
    active = (i + items.length) % items.length;
    [...list.children].forEach((li, j) => {
      li.classList.toggle("active", j === active);
      li.setAttribute("aria-selected", j === active ? "true" : "false");
    });
  }

  function accept(i) {
    const s = items[i];
    if (!s || !ctx) return;
    const pos = input.selectionStart;
    let insert = s.value;
    if (ctx.kind === "label") insert += '="';
    else if (ctx.kind === "value") insert = s.value.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
    const tail = input.value.slice(pos);
    const skipQuote = ctx.kind === "value" && tail.startsWith('"') ? 1 : 0;
    input.value = input.value.slice(0, ctx.from) + insert + tail.slice(skipQuote);
    const caret = ctx.from + insert.length;
    input.setSelectionRange(caret, caret);
    close();
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }

  const refresh = debounce(async () => {
    const mine = ++seq;
    ctx = completionContext(input.value, input.selectionStart);
    if (!ctx || document.activeElement !== input) {
      close();
      return;
    }
    const p = ctx.prefix.toLowerCase();
    const starts = (v) => v.toLowerCase().startsWith(p);
    let found = [];
    try {
      if (ctx.kind === "metric") {
        if (!p) {
          close();
          return;
        }
        const metrics = source.metrics().filter(starts).map((v) => ({ value: v, kind: "metric", note: "metric" }));
        const fns = FUNCTIONS.filter(starts).map((v) => ({ value: v, kind: "function", note: "function" }));
        found = [...metrics, ...fns];
      } else if (ctx.kind === "label") {
        const names = await source.labelNames(ctx.metric);
        found = names.filter((n) => n !== "__name__" && starts(n)).map((v) => ({ value: v, kind: "label", note: "label" }));
      } else {
        const values = await source.labelValues(ctx.metric, ctx.label);
        found = values.filter(starts).map((v) => ({ value: v, kind: "value", note: ctx.label }));
      }
    } catch {
      found = []; // autocomplete is a convenience
    }
    if (mine !== seq) return;
    if (found.length === 1 && found[0].value === ctx.prefix && ctx.kind === "metric") found = [];
    show(found);
  }, 60);

  input.addEventListener("input", refresh);
  input.addEventListener("click", refresh);
  input.addEventListener("blur", () => setTimeout(close, 100));
  input.addEventListener(
    "keydown",
    (e) => {
      if (list.hidden || !items.length) return;
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        e.stopImmediatePropagation();
        highlight(active + (e.key === "ArrowDown" ? 1 : -1));
      } else if (e.key === "Tab" || (e.key === "Enter" && !e.ctrlKey && !e.metaKey)) {
        e.preventDefault();
        e.stopImmediatePropagation(); // Enter takes the suggestion instead of running the query
        accept(active);
      } else if (e.key === "Escape") {
        e.preventDefault();
        close();
      }
    },
    true,
  );
  return { close, list };
}
