// HTTP calls to RTPM with the user's bearer token; errors carry the server's message.

import { clearSession, token } from "./session.js";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export async function api(path, { method = "GET", body, query, text = false, signal, auth = true } = {}) {
  let url = path;
  if (query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v === undefined || v === null || v === "") continue;
      if (Array.isArray(v)) v.forEach((x) => qs.append(k, x));
      else qs.append(k, String(v));
    }
    const s = qs.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  const headers = { Accept: text ? "text/plain" : "application/json" };
  const t = auth ? token() : null;
  if (t) headers.Authorization = `Bearer ${t}`;
  const init = { method, headers, signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url, init);
  if (res.status === 204) return null;
  const raw = await res.text();
  let data = raw;
  if (!text) {
    try {
      data = raw ? JSON.parse(raw) : null;
    } catch {
      data = raw;
    }
  }
  if (!res.ok) {
    if (res.status === 401 && auth && t) {
      clearSession();
      onUnauthorized();
    }
    throw new ApiError(res.status, errorMessage(res, data), data);
  }
  return data;
}

function errorMessage(res, data) {
  if (data && typeof data === "object") {
    if (data.error && typeof data.error === "object") {
      const details = data.error.details;
      if (Array.isArray(details) && details.length && details[0].field !== undefined) {
        return details.map((p) => `${p.field}: ${p.reason}`).join("; ");
      }
      return data.error.message || res.statusText;
    }
    if (typeof data.error === "string") return data.error; // the Prometheus envelope
  }
  return `${res.status} ${res.statusText}`;
}

/** PromQL range query -> [{metric, ts: [ms], vs: [number]}]. */
export async function queryRange(query, startMs, endMs, stepSeconds, signal) {
  const data = await api("/api/v1/query_range", {
    query: { query, start: startMs / 1000, end: endMs / 1000, step: stepSeconds },
    signal,
  });
  const result = data.data.result || [];
  return result.map((r) => ({
    metric: r.metric,
    ts: r.values.map((p) => Math.round(p[0] * 1000)),
    vs: r.values.map((p) => toNum(p[1])),
  }));
}

function toNum(raw) {
  if (raw === "+Inf") return Infinity;
  if (raw === "-Inf") return -Infinity;
  return Number(raw);
}
