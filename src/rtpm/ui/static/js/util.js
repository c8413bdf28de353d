// Small helpers shared by every view: DOM building, formatting, durations.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

let toastTimer = 0;
export function toast(message, kind = "info") {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.className = `toast toast-${kind}`;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (box.hidden = true), 4000);
}

const DURATION_UNITS = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };

/** "5m" -> 300, "1h30m" -> 5400, "15" -> 15 (seconds); NaN when invalid. */
export function parseDuration(text) {
  const s = String(text ?? "").trim();
  if (!s) return NaN;
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)/g;
  let total = 0;
  let consumed = 0;
  for (const m of s.matchAll(re)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]];
    consumed += m[0].length;
  }
  return consumed === s.length ? total : NaN;
}

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds)) return "";
  if (seconds === 0) return "0s";
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  const parts = [];
  let rest = Math.round(seconds);
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]]) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.slice(0, 2).join("") || "0s";
}

export function since(iso) {
  if (!iso) return "";
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  return seconds < 1 ? "just now" : `${formatDuration(seconds)} ago`;
}

const pad = (n) => String(n).padStart(2, "0");

/** Local date and time, "2026-11-27 10:00:05". */
export function formatTime(ms, withDate = true) {
  const d = new Date(ms);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withDate ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}` : time;
}

/** The value of an <input type="datetime-local" step="1">, in local time. */
export function toLocalInput(ms) {
  return formatTime(ms).replace(" ", "T");
}

const SI = [
  [1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"],
];
const BYTES = [
  [1024 ** 4, "TiB"], [1024 ** 3, "GiB"], [1024 ** 2, "MiB"], [1024, "KiB"],
];

function trim(n, digits = 3) {
  if (n === 0) return "0";
  const abs = Math.abs(n);
  if (abs >= 1000 || Number.isInteger(n)) return String(Math.round(n * 100) / 100);
  return String(Number(n.toPrecision(digits)));
}

/** A value with its unit: 0.25 seconds -> "250ms", 2048 bytes -> "2KiB", 42 percent -> "42%". */
export function formatValue(v, unit = "") {
  if (v === null || v === undefined) return "–";
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "+Inf" : "-Inf";
  const u = (unit || "").toLowerCase();
  const abs = Math.abs(v);
  if (u === "percent" || u === "%") return `${trim(v)}%`;
  if (u === "ratio") return `${trim(v * 100)}%`;
  if (u === "bytes" || u === "byte") {
    for (const [size, name] of BYTES) if (abs >= size) return `${trim(v / size)} ${name}`;
    return `${trim(v)} B`;
  }
  if (u === "seconds" || u === "second" || u === "s") {
    if (abs !== 0 && abs < 1e-3) return `${trim(v * 1e6)}µs`;
    if (abs !== 0 && abs < 1) return `${trim(v * 1000)}ms`;
    if (abs >= 3600) return formatDuration(v);
    return `${trim(v)}s`;
  }
  let text = trim(v);
  for (const [size, prefix] of SI) {
    if (abs >= size) {
      text = `${trim(v / size)}${prefix}`;
      break;
    }
  }
  return u ? `${text} ${unit}` : text;
}

/** Prometheus sample values are strings ("NaN", "+Inf"); the WebSocket sends numbers or those strings. */
export function toNumber(raw) {
  if (typeof raw === "number") return raw;
  if (raw === "+Inf" || raw === "Inf") return Infinity;
  if (raw === "-Inf") return -Infinity;
  return Number(raw);
}

/** `name{a="1", b="2"}` for a metric's labels. */
export function seriesName(metric) {
  const name = metric.__name__ || "";
  const labels = Object.keys(metric)
    .filter((k) => k !== "__name__")
    .sort()
    .map((k) => `${k}="${metric[k]}"`);
  if (!labels.length) return name || "{}";
  return `${name}{${labels.join(", ")}}`;
}

export function seriesKey(metric) {
  return JSON.stringify(Object.keys(metric).sort().map((k) => [k, metric[k]]));
}

export function debounce(fn, ms) {
  let t = 0;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

/** Query-string parameters of the hash route ("#/explorer?q=up" -> {q: "up"}). */
export function hashParams() {
  const i = location.hash.indexOf("?");
  return Object.fromEntries(new URLSearchParams(i >= 0 ? location.hash.slice(i + 1) : ""));
}

export function setHashParams(view, params) {
  const qs = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== undefined && v !== null));
  const next = `#/${view}${qs.toString() ? `?${qs}` : ""}`;
  if (location.hash !== next) history.replaceState(null, "", next);
}
