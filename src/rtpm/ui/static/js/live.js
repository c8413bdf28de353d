// The live channel: WS /ws/metrics with ?token=, subscriptions kept across reconnects.

import { token } from "./session.js";
import { toNumber } from "./util.js";

export class LiveClient {
  /**
   * @param {{onMetric?: Function, onAlert?: Function, onState?: Function, onDenied?: Function}} handlers
   */
  constructor(handlers = {}) {
    this.handlers = handlers;
    this.subs = new Map();
    this.ws = null;
    this.closed = false;
    this.retry = 0;
    this.timer = 0;
    this.state = "idle";
  }

  setState(state, detail = "") {
    this.state = state;
    this.handlers.onState?.(state, detail);
  }

  connect() {
    if (this.closed || this.ws) return;
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const t = token();
    const url = `${proto}://${location.host}/ws/metrics${t ? `?token=${encodeURIComponent(t)}` : ""}`;
    this.setState("connecting");
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.retry = 0;
      this.setState("open");
      for (const data of this.subs.values()) ws.send(JSON.stringify({ type: "subscribe", data }));
    };
    ws.onmessage = (ev) => {
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg.type === "metric") {
        const d = msg.data || msg;
        const samples = (d.samples || []).map((s) => [Date.parse(s.timestamp), toNumber(s.value)]);
        this.handlers.onMetric?.(d.series, samples, d);
      } else if (msg.type === "alert") {
        this.handlers.onAlert?.((msg.data || msg).alert);
      } else if (msg.type === "error") {
        this.setState("error", (msg.data || msg).message || "error");
      } else if (msg.type === "lagged") {
        this.handlers.onLagged?.(msg.data || msg);
      }
    };
    ws.onclose = (ev) => {
      this.ws = null;
      if (this.closed) return;
      if (ev.code === 1008) {
        this.setState("denied", ev.reason || "not allowed");
        this.handlers.onDenied?.(ev.reason);
        return;
      }
      this.setState("reconnecting");
      const delay = Math.min(10000, 500 * 2 ** this.retry++);
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  subscribe(data) {
    const id = data.id || data.subscription;
    this.subs.set(id, data);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "subscribe", data }));
    else this.connect();
  }

  unsubscribe(id) {
    const data = this.subs.get(id);
    this.subs.delete(id);
    if (data && this.ws && this.ws.readyState === WebSocket.OPEN) {
      const body = data.id ? { id: data.id } : { subscription: data.subscription };
      this.ws.send(JSON.stringify({ type: "unsubscribe", data: body }));
    }
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close(1000);
    this.ws = null;
    this.subs.clear();
  }
}

/**
 * A plain vector selector (`name{a="b", c=~"d"}`) as a live subscription, or null for any other
 * PromQL (those are refreshed by polling instead).
 */
export function selectorSubscription(query, id) {
  const m = /^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(?:\{(.*)\})?\s*$/s.exec(query);
  if (!m) return null;
  let name = m[1] || null;
  const matchers = [];
  const body = m[2] || "";
  const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)/gy;
  let pos = 0;
  while (pos < body.length) {
    re.lastIndex = pos;
    const mm = re.exec(body);
    if (!mm) {
      if (body.slice(pos).trim() === "") break;
      return null;
    }
    const value = JSON.parse(`"${mm[3]}"`);
    if (mm[1] === "__name__" && mm[2] === "=") name = value;
    else matchers.push({ name: mm[1], type: mm[2], value });
    pos = re.lastIndex;
  }
  if (!name) return null;
  const data = { subscription: "metrics", id, metrics: [name] };
  if (matchers.length) data.matchers = matchers;
  return data;
}
