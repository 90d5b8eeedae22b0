// Ringline browser engine: the connection to the server (docs/protocol.md). One
// WebSocket at a time: login, pings with acknowledgements, requests and their answers,
// and resuming the session after a dropped connection (requests whose answer was lost
// are sent again). Server pushes go to the engine (engine.js). Entry point for users:
// ringline.js.

import {
  CLOSE_NODE_LEAVING, ErrorCode, FATAL_CLOSES, MAX_SERVER_URLS, PROTOCOL_VERSION, RinglineError, bad,
} from "./protocol.js";
import { RinglineEvent } from "./events.js";

/** The WebSocket URL of a server URL ("http://host:port" -> "ws://host:port/v1/ws"). */
export function wsUrlOf(serverUrl, name = "serverUrl") {
  let u;
  try {
    u = new URL(serverUrl, typeof location !== "undefined" ? location.href : undefined);
  } catch {
    throw bad(`${name} must be a URL like "http://127.0.0.1:8080", got ${JSON.stringify(serverUrl)}`);
  }
  const scheme = { "http:": "ws:", "https:": "wss:", "ws:": "ws:", "wss:": "wss:" }[u.protocol];
  if (!scheme) throw bad(`${name} must be an http(s) or ws(s) URL, got ${JSON.stringify(serverUrl)}`);
  let path = u.pathname.replace(/\/+$/, "");
  if (!path.endsWith("/v1/ws")) path += "/v1/ws";
  return `${scheme}//${u.host}${path}${u.search}`;
}

/** The WebSocket URLs of `serverUrl`: one URL, or an array of 1..MAX_SERVER_URLS
 * different ones (the nodes of a cluster). */
export function wsUrlsOf(serverUrl) {
  if (!Array.isArray(serverUrl)) return [wsUrlOf(serverUrl)];
  if (!serverUrl.length) {
    throw bad('serverUrl is an empty array; give one URL or an array of them, like ["https://a.example.com", "https://b.example.com"]');
  }
  if (serverUrl.length > MAX_SERVER_URLS) {
    throw bad(`serverUrl lists ${serverUrl.length} URLs; at most ${MAX_SERVER_URLS} are allowed`);
  }
  const out = [];
  serverUrl.forEach((url, i) => {
    if (typeof url !== "string" || !url) {
      throw bad(`serverUrl[${i}] must be a URL like "http://127.0.0.1:8080", got ${JSON.stringify(url)}`);
    }
    const ws = wsUrlOf(url, `serverUrl[${i}]`);
    const first = out.indexOf(ws);
    if (first >= 0) {
      throw bad(`serverUrl[${i}] (${JSON.stringify(url)}) is the same server as serverUrl[${first}] (${JSON.stringify(serverUrl[first])}); list each server once`);
    }
    out.push(ws);
  });
  return out;
}

/**
 * The logged-in session of one engine. The engine (`host`) receives the pushes
 * (`_onPush`), the events (`_emit`, `_fail`, `_log`) and ends everything with
 * `_shutdown(why)`, which calls close() here.
 *
 * With several WebSocket URLs (a cluster) it uses one at a time (`at`): the login
 * tries them in turn until one answers; every reconnect moves on to the next one,
 * round robin, and so does every failed attempt; after close 1012 the first attempt
 * goes out without back-off.
 */
export class Session {
  /**
   * @param {any} host the CallEngine
   * @param {string[]} wsUrls
   * @param {{requestTimeout: number}} options
   */
  constructor(host, wsUrls, options) {
    this.host = host;
    this.wsUrls = wsUrls;
    /** Index of the URL in use (while reconnecting: the one tried next). */
    this.at = 0;
    this.options = options;
    /** @type {WebSocket | null} */
    this.ws = null;
    this.ids = 1;
    /** @type {Map<number, any>} */
    this.pending = new Map();
    this.lastSeq = 0;
    /** The session token of the last login or resume ("" before, or once it is gone). */
    this.token = "";
    /** The login frame (without its id), or null when logged out. */
    this.login = null;
    this.online = false;
    /** @type {Array<() => void>} */
    this.onlineWaiters = [];
    this.heartbeat = 5;
    this.grace = 15;
    this.pingTimer = null;
    this.closing = false;
    /** @type {RTCIceServer[]} */
    this.iceServers = [];
    /** @type {RTCIceTransportPolicy} */
    this.iceTransportPolicy = "all";
  }

  /** The WebSocket URL in use. */
  get wsUrl() { return this.wsUrls[this.at]; }

  /** Move on to the next URL (round robin; with one URL, stay). */
  next() { this.at = (this.at + 1) % this.wsUrls.length; }

  /** Log in with `login` (the login frame without its id), through the URL in use or,
   * when it cannot be reached, closes first or refuses for now, the next ones in turn.
   * Resolves with the result. */
  async start(login) {
    this.closing = false;
    this.login = { op: "login", v: PROTOCOL_VERSION, sfu: true, ...login }; // sfu: it follows SFU rooms (docs/sfu.md)
    const failures = [];
    for (let i = 0; i < this.wsUrls.length; i++) {
      try {
        return await this.open(false);
      } catch (err) {
        const transient = err.code === ErrorCode.SIGNALING_SEND_FAIL || err.code === ErrorCode.RATE_LIMITED;
        if (this.wsUrls.length === 1 || !transient || !this.login || this.closing) throw err;
        failures.push(`${this.wsUrl}: ${err.msg || err.message}`);
        this.next();
      }
    }
    throw new RinglineError(ErrorCode.SIGNALING_SEND_FAIL, `none of the ${this.wsUrls.length} servers could log in (${failures.join("; ")}); check the server URLs and that the servers are running, then call init() again`);
  }

  /** Forget the connection and fail every waiting request with `why` (no events). */
  close(why) {
    this.closing = true;
    clearInterval(this.pingTimer);
    this.pingTimer = null;
    const ws = this.ws;
    this.ws = null;
    this.online = false;
    if (ws && ws.readyState <= 1) ws.close(1000, "bye");
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new RinglineError(ErrorCode.INIT_FAIL, `the session ended (${why}); call init() again`));
    }
    this.pending.clear();
    this.login = null;
    this.token = "";
    this.lastSeq = 0;
  }

  /** Open a WebSocket and log in (or resume). Resolves with the result. */
  open(resume) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.wsUrl);
      } catch (err) {
        reject(new RinglineError(ErrorCode.SIGNALING_SEND_FAIL, `cannot connect to ${this.wsUrl}: ${err.message}`));
        return;
      }
      this.ws = ws;
      let settled = false;
      let opened = false;
      const fail = (err) => {
        if (!settled) {
          settled = true;
          reject(err);
        }
      };
      const timer = setTimeout(() => {
        fail(new RinglineError(ErrorCode.SIGNALING_SEND_FAIL, `no answer from ${this.wsUrl}; is the server running?`));
        ws.close();
      }, this.options.requestTimeout);
      ws.onopen = () => {
        const id = this.ids++;
        const frame = resume
          ? { id, op: "resume", v: PROTOCOL_VERSION, session: this.token, ack: this.lastSeq, platform: "Web", sfu: true }
          : { id, ...this.login };
        this.pending.set(id, {
          resolve: (result) => {
            clearTimeout(timer);
            settled = true;
            opened = true;
            this.onOnline(result, resume);
            resolve(result);
          },
          reject: (err) => {
            clearTimeout(timer);
            fail(err);
          },
          timer: null,
        });
        ws.send(JSON.stringify(frame));
      };
      ws.onmessage = (msg) => this.onFrame(ws, msg.data);
      ws.onclose = (e) => {
        clearTimeout(timer);
        fail(new RinglineError(ErrorCode.SIGNALING_SEND_FAIL, `connection closed (${e.code} ${e.reason || ""})`));
        // A socket that never got its login or resume answered is the caller's to
        // retry (start(), or the reconnect loop); one that was online is lost.
        if (opened) this.onClose(ws, e);
      };
      ws.onerror = () => {};
    });
  }

  onOnline(result, resumed) {
    this.afterDrop(result, resumed);
    this.token = result.session || this.token;
    if (!resumed) this.lastSeq = 0;
    this.host.deviceId = result.device_id || this.host.deviceId;
    this.heartbeat = result.heartbeat_interval || 5;
    this.grace = result.heartbeat_grace || 15;
    if (Array.isArray(result.ice_servers)) this.iceServers = result.ice_servers;
    // "relay": media only through the TURN servers (ringline serve --ice-transport-policy).
    this.iceTransportPolicy = result.ice_transport_policy === "relay" ? "relay" : "all";
    this.online = true;
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => this.ping(), this.heartbeat * 1000);
    const waiters = this.onlineWaiters;
    this.onlineWaiters = [];
    for (const w of waiters) w();
    this.host._emit(RinglineEvent.CONNECTION_CHANGED, { state: "online", resumed });
  }

  ping() {
    const ws = this.ws;
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ op: "ping", ack: this.lastSeq }));
  }

  onFrame(ws, text) {
    if (ws !== this.ws) return;
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    if ("re" in f) {
      const p = this.pending.get(f.re);
      if (!p) return;
      this.pending.delete(f.re);
      clearTimeout(p.timer);
      if (f.ok) p.resolve(f.result || {});
      else p.reject(new RinglineError(f.code, f.message || "refused"));
    } else if ("ev" in f) {
      if (typeof f.seq === "number") {
        if (f.seq <= this.lastSeq) return; // already handled (replayed after a resume)
        this.lastSeq = f.seq;
      }
      try {
        this.host._onPush(f.ev, f.args || {});
      } catch (err) {
        console.error("ringline: handling", f.ev, "failed", err);
      }
    }
  }

  async onClose(ws, e) {
    if (ws !== this.ws) return;
    this.online = false;
    clearInterval(this.pingTimer);
    if (this.closing || !this.login) return;
    // Codes after which logging in again would not help (protocol.md "Closing"). Any
    // other close (1001 server restart, 1012 node leaving, 1013 try again, 1006
    // network, a proxy's 1000) is a lost connection: resume the session, on the next
    // URL when there are several (at once after 1012).
    if (e.code in FATAL_CLOSES) {
      this.host._shutdown(FATAL_CLOSES[e.code]);
      return;
    }
    this.host._emit(RinglineEvent.CONNECTION_CHANGED, { state: "reconnecting" });
    this.next();
    const deadline = performance.now() + this.grace * 1000;
    let delay = 250;
    let atOnce = e.code === CLOSE_NODE_LEAVING;
    while (!this.closing && this.login && performance.now() < deadline + 30000) {
      if (!atOnce) {
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 4000);
      }
      atOnce = false;
      if (this.closing || !this.login) return;
      try {
        await this.open(!!this.token && performance.now() < deadline);
        return;
      } catch (err) {
        if (err.code === ErrorCode.SESSION_UNKNOWN) {
          this.token = "";
          this.lastSeq = 0;
          // The session is gone: log in afresh; calls it had ended as OFFLINE and
          // their end events arrive now (same device id).
        } else if (err.code && err.code > 0 && err.code !== ErrorCode.CALL_NOT_FOUND) {
          this.host._fail(err.code, `logging in again failed: ${err.msg || err.message}`);
          this.host._shutdown("logging in again failed");
          return;
        } else {
          this.next(); // unreachable, closed (1013 …) or refused for now: the next URL
        }
      }
    }
    if (this.login && !this.online && !this.closing) {
      this.host._fail(ErrorCode.SIGNALING_SEND_FAIL, "lost the connection to the server; call init() again");
      this.host._shutdown("connection lost");
    }
  }

  /** Send request `op`; resolves with its result or rejects with a RinglineError. */
  async request(op, args = {}, timeout = this.options.requestTimeout) {
    if (!this.login) {
      throw new RinglineError(ErrorCode.INIT_FAIL, `${op}(): the engine is not initialised; call init({sdkAppId, userId, userSig}) first`);
    }
    if (!this.online) {
      await new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new RinglineError(ErrorCode.SIGNALING_SEND_FAIL, `${op}(): not connected to the server`)), timeout);
        this.onlineWaiters.push(() => {
          clearTimeout(t);
          resolve(undefined);
        });
      });
    }
    const id = this.ids++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RinglineError(ErrorCode.SIGNALING_SEND_FAIL, `${op}(): no answer from the server within ${timeout / 1000} s; it may or may not have taken effect`));
      }, timeout);
      // `frame` is kept to send it again, unchanged, if the connection drops before
      // the answer and the session is resumed (onOnline).
      const frame = JSON.stringify({ id, op, ...args });
      // A socket still connecting (a drop not yet noticed, a reconnect under way)
      // cannot take the frame: it stays pending, unsent, and goes out after the resume.
      const sent = !!this.ws && this.ws.readyState === 1;
      this.pending.set(id, { resolve, reject, timer, op, frame, unsent: !sent });
      if (sent) this.ws.send(frame);
    });
  }

  /** Requests still waiting for an answer after a drop: after a resume with the
   * server's answers kept, send them again (same ids, oldest first: the server answers
   * one it already ran with its first answer); otherwise fail them with -1406. */
  afterDrop(result, resumed) {
    const all = [...this.pending.entries()].filter(([, p]) => p.frame).sort(([x], [y]) => x - y);
    const replay = resumed && result.answers_kept === true;
    const why = resumed ? "the server cannot replay its answer (it restarted, or is too old)" : "the session could not be resumed and a new one is opened";
    for (const [id, p] of all) {
      // Frames the server never saw (made while the socket was connecting) simply go
      // out now; frames it may have seen go again only where it kept its answers.
      // Either way the frame is kept until the answer comes: a second drop sends it again.
      if (p.unsent || replay) {
        p.unsent = false;
        this.ws.send(p.frame);
        continue;
      }
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(new RinglineError(ErrorCode.SIGNALING_SEND_FAIL, `${p.op}(): the connection dropped before the server answered and ${why}; it may or may not have taken effect: check the call status or wait for the events, then retry`));
    }
  }

  /** Fire-and-forget (page unload): send the frame if the socket is open. */
  sendNow(op, args) {
    const ws = this.ws;
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ id: this.ids++, op, ...args }));
  }
}
