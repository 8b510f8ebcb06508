// The push channel: one websocket, many subscriptions, resumed after a reconnect.
//
// Each subscription gets a snapshot (stamped with log positions), then "events" frames
// that carry the positions they reach. After a dropped connection every subscription is
// sent again with `resume`: the positions of its last frame, so nothing is lost or repeated.

const PATH = "/api/2.0/eventflow/live";

export class LiveChannel {
  constructor() {
    this.subs = new Map();
    this.nextId = 1;
    this.ws = null;
    this.backoff = 250;
    this.listeners = new Set();
    this.reconnects = 0;
    this.connect();
  }

  onState(listener) { this.listeners.add(listener); listener(this.state || "connecting"); }

  setState(state) {
    this.state = state;
    for (const listener of this.listeners) listener(state);
  }

  connect() {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + PATH;
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 250;
      this.setState("live");
      for (const sub of this.subs.values()) this.send(sub);
    };
    ws.onmessage = (message) => this.receive(JSON.parse(message.data));
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.setState("reconnecting");
      this.reconnects += 1;
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 5000);
    };
  }

  // Drop the connection as a network failure would (tests and the "reconnect" button).
  drop() { if (this.ws) this.ws.close(); }

  send(sub) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    const message = { op: "subscribe", sub: sub.id, kind: sub.kind, ...sub.spec };
    if (sub.positions) message.resume = sub.positions;
    this.ws.send(JSON.stringify(message));
  }

  subscribe(kind, spec, handlers) {
    const sub = { id: "s" + this.nextId++, kind, spec, handlers, positions: null };
    this.subs.set(sub.id, sub);
    this.send(sub);
    return {
      id: sub.id,
      close: () => {
        this.subs.delete(sub.id);
        if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ op: "unsubscribe", sub: sub.id }));
      },
    };
  }

  receive(message) {
    const sub = this.subs.get(message.sub);
    if (!sub) return;
    const h = sub.handlers;
    switch (message.type) {
      case "snapshot":
        sub.positions = message.positions;
        h.snapshot && h.snapshot(message.data);
        break;
      case "resumed":
        sub.positions = message.positions;
        break;
      case "events":
        sub.positions = message.positions;
        h.events && h.events(message.events, message.points);
        break;
      case "reset": // fell behind: a fresh snapshot follows
        sub.positions = null;
        h.reset && h.reset();
        break;
      case "error":
        h.error && h.error(message.message);
        break;
    }
  }
}
