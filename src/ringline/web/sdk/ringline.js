// Ringline browser engine: calls with the vendor's web event names (docs/spec.md §8) and
// real WebRTC audio/video between the members of a call (docs/media.md).
//
// Plain ES module, no build step, no dependencies. Served by every Ringline server at
// /sdk/ringline.js (types: /sdk/ringline.d.ts). Reference: docs/web.md.
//
//   import { CallEngine, TUICallEvent, MediaType } from "/sdk/ringline.js";
//   const engine = new CallEngine({ serverUrl: location.origin });
//   engine.on(TUICallEvent.ON_CALL_RECEIVED, ({ callID, callerId }) => engine.accept());
//   await engine.init({ sdkAppId, userId, userSig });
//   await engine.calls(["bob"], MediaType.VIDEO);
//
// How it works: one WebSocket per engine speaks docs/protocol.md (login, pings with
// acknowledgements, resume after a dropped connection). Server pushes become events.
// When both this device and another member are connected (onUserEnter), the two open
// an RTCPeerConnection: the lower user id offers, the other answers, ICE candidates
// are trickled through the server's `signal` op (docs/media.md). Every 2 s the
// connections' statistics give a network quality per user; every ~300 ms the audio
// levels of the local and remote tracks give the volumes.

/** @typedef {import("./ringline.d.ts").CallEngineOptions} CallEngineOptions */

/** Event names of the vendor's web engine (docs/spec.md §8). */
export const TUICallEvent = Object.freeze({
  ERROR: "onError",
  ON_CALL_RECEIVED: "onCallReceived",
  ON_CALL_BEGIN: "onCallBegin",
  CALL_END: "onCallEnd",
  ON_CALL_NOT_CONNECTED: "onCallNotConnected",
  ON_CALL_CANCELED: "onCallCanceled",
  ON_USER_INVITING: "onUserInviting",
  USER_ENTER: "onUserEnter",
  USER_LEAVE: "onUserLeave",
  REJECT: "onReject",
  NO_RESP: "onNoResp",
  LINE_BUSY: "onLineBusy",
  USER_VIDEO_AVAILABLE: "onUserVideoAvailable",
  USER_AUDIO_AVAILABLE: "onUserAudioAvailable",
  USER_VOICE_VOLUME: "onUserVoiceVolume",
  ON_USER_NETWORK_QUALITY_CHANGED: "onUserNetworkQualityChanged",
  CALL_TYPE_CHANGED: "onCallTypeChanged",
  KICKED_OUT: "onKickedOut",
  USER_SIG_EXPIRED: "onUserSigExpired",
});

/** Ringline's own events (not in the vendor's list): media streams and status. */
export const RinglineEvent = Object.freeze({
  /** {userID, stream}: a remote user's MediaStream got a track (attach it to a <video>). */
  REMOTE_STREAM: "onRemoteStream",
  /** {stream}: the local MediaStream changed (camera/microphone acquired or released). */
  LOCAL_STREAM: "onLocalStream",
  /** {callID, callStatus, callRole, callMediaType}: this device's call state changed. */
  STATUS_CHANGED: "onStatusChanged",
  /** {state}: the connection to the server: "online", "reconnecting", "offline". */
  CONNECTION_CHANGED: "onConnectionChanged",
});

/**
 * The vendor's other event names, for code written against its uni-app / mini-program
 * engine (`TUICallEngine.addEventListener('onCallReceived', …)`): one row per vendor
 * name, the Ringline event it fires with, and the payload keys it adds to that event's
 * payload. Subscribe with on() or addEventListener(), under either name. Every payload
 * also carries `userId` beside `userID` and `groupId` beside `groupID` (vendorKeys).
 */
export const VENDOR_EVENTS = Object.freeze({
  onError: { event: TUICallEvent.ERROR },
  onCallReceived: { event: TUICallEvent.ON_CALL_RECEIVED },
  onCallCancelled: { event: TUICallEvent.ON_CALL_CANCELED },
  onCallBegin: { event: TUICallEvent.ON_CALL_BEGIN },
  onCallEnd: { event: TUICallEvent.CALL_END },
  onCallNotConnected: { event: TUICallEvent.ON_CALL_NOT_CONNECTED },
  onCallMediaTypeChanged: {
    event: TUICallEvent.CALL_TYPE_CHANGED,
    payload: (p) => ({ oldCallMediaType: p.oldCallType, newCallMediaType: p.newCallType }),
  },
  onUserInviting: { event: TUICallEvent.ON_USER_INVITING },
  onUserReject: { event: TUICallEvent.REJECT },
  onUserNoResponse: { event: TUICallEvent.NO_RESP },
  onUserLineBusy: { event: TUICallEvent.LINE_BUSY },
  onUserJoin: { event: TUICallEvent.USER_ENTER },
  onUserLeave: { event: TUICallEvent.USER_LEAVE },
  onUserVideoAvailable: { event: TUICallEvent.USER_VIDEO_AVAILABLE },
  onUserAudioAvailable: { event: TUICallEvent.USER_AUDIO_AVAILABLE },
  onUserVoiceVolumeChanged: {
    event: TUICallEvent.USER_VOICE_VOLUME,
    // The vendor's map {userId: volume}; the web list stays as volumeList.
    payload: (p) => ({
      volumeMap: Object.fromEntries(p.volumeMap.map(({ userId, audioVolume }) => [userId, audioVolume])),
      volumeList: p.volumeMap,
    }),
  },
  onUserNetworkQualityChanged: { event: TUICallEvent.ON_USER_NETWORK_QUALITY_CHANGED },
  onKickedOffline: { event: TUICallEvent.KICKED_OUT },
  // The uni-app TUICallEvent.KICKED_OFFLINE constant is spelled with a capital L.
  onKickedOffLine: { event: TUICallEvent.KICKED_OUT },
  onUserSigExpired: { event: TUICallEvent.USER_SIG_EXPIRED },
});

/** Ringline event -> [vendor name, payload additions] of the rows whose name differs. */
const VENDOR_ALIASES = new Map();
for (const [name, row] of Object.entries(VENDOR_EVENTS)) {
  if (!VENDOR_ALIASES.has(row.event)) VENDOR_ALIASES.set(row.event, []);
  VENDOR_ALIASES.get(row.event).push([name, row.payload || null]);
}

/** The vendor's lower-case `Id` spellings beside the web engine's `ID` ones. */
function vendorKeys(p) {
  if (!p || typeof p !== "object") return p;
  const out = { ...p };
  if ("userID" in p && !("userId" in p)) out.userId = p.userID;
  if ("groupID" in p && !("groupId" in p)) out.groupId = p.groupID;
  return out;
}

export const MediaType = Object.freeze({ UNKNOWN: 0, AUDIO: 1, VIDEO: 2 });
/** The vendor's web spelling of MediaType. */
export const TUICallType = Object.freeze({ AUDIO_CALL: 1, VIDEO_CALL: 2 });
export const CallRole = Object.freeze({ NONE: 0, CALLER: 1, CALLED: 2 });
export const CallStatus = Object.freeze({ NONE: 0, WAITING: 1, ACCEPT: 2 });
export const CallScene = Object.freeze({ NONE: 0, GROUP_CALL: 1, MULTI_CALL: 2, SINGLE_CALL: 3 });
export const CallEndReason = Object.freeze({
  UNKNOWN: 0, HANGUP: 1, REJECT: 2, NO_RESPONSE: 3, OFFLINE: 4, LINE_BUSY: 5,
  CANCELED: 6, OTHER_DEVICE_ACCEPTED: 7, OTHER_DEVICE_REJECT: 8, END_BY_SERVER: 9,
});
export const NetworkQuality = Object.freeze({
  UNKNOWN: 0, EXCELLENT: 1, GOOD: 2, POOR: 3, BAD: 4, VERY_BAD: 5, DOWN: 6,
});
export const CallResultType = Object.freeze({ UNKNOWN: 0, MISSED: 1, INCOMING: 2, OUTGOING: 3 });
export const ErrorCode = Object.freeze({
  DEVICE_ERROR: -1101,
  INIT_FAIL: -1201,
  PARAM_INVALID: -1202,
  REQUEST_REFUSED: -1203,
  REQUEST_REPEATED: -1204,
  SCENE_NOT_SUPPORTED: -1205,
  NO_PERMISSION: -1206,
  SIGNALING_SEND_FAIL: -1406,
  FRAME_TOO_LARGE: -1412,
  RATE_LIMITED: -1413,
  SESSION_UNKNOWN: -1414,
  CALL_NOT_FOUND: 8010,
});

/** Every rejected promise of the engine carries a vendor-style code and a message
 * that says what to do. */
export class RinglineError extends Error {
  /** @param {number} code @param {string} message */
  constructor(code, message) {
    super(`[${code}] ${message}`);
    this.name = "RinglineError";
    this.code = code;
    /** The message without the code (the vendor's `msg`). */
    this.msg = message;
  }
}

const PROTOCOL = 1;
const USER_ID = /^[A-Za-z0-9_-]{1,32}$/;
const DEVICE_ID = /^[A-Za-z0-9_.:-]{1,64}$/;
const MAX_CALLEES = 8;
const QUALITY_INTERVAL_MS = 2000;
const VOLUME_INTERVAL_MS = 300;
const DOWN_AFTER_MS = 3000;
const TERMINAL = new Set(["on_call_end", "on_call_not_connected"]);
const CANCEL_REASON = {
  [CallEndReason.CANCELED]: "cancel",
  [CallEndReason.REJECT]: "reject",
  [CallEndReason.NO_RESPONSE]: "timeout",
  [CallEndReason.LINE_BUSY]: "busyline",
  [CallEndReason.OTHER_DEVICE_ACCEPTED]: "otherDeviceAccepted",
  [CallEndReason.OTHER_DEVICE_REJECT]: "otherDeviceReject",
  [CallEndReason.OFFLINE]: "offline",
  [CallEndReason.END_BY_SERVER]: "endByServer",
};

/**
 * NetworkQuality from round-trip time (ms), packet loss (% in the last interval) and
 * jitter (ms): the worst of the three grades (docs/media.md §5). A metric that is
 * `null`/`undefined` (not measured yet) does not limit the grade.
 * @param {{rtt?: number|null, loss?: number|null, jitter?: number|null}} m
 * @returns {number}
 */
export function gradeQuality({ rtt = null, loss = null, jitter = null }) {
  const grade = (v, limits) => {
    if (v === null || v === undefined || Number.isNaN(v)) return 1;
    for (let i = 0; i < limits.length; i++) if (v < limits[i]) return i + 1;
    return 5;
  };
  return Math.max(
    grade(rtt, [100, 200, 300, 500]),
    grade(loss, [1, 3, 6, 10]),
    grade(jitter, [20, 40, 60, 100]),
  );
}

/** @param {number} level linear 0..1 (clipped) @returns {number} 0..100 */
export function volumeOf(level) {
  return Math.round(100 * Math.min(1, Math.max(0, level || 0)));
}

function bad(message) {
  return new RinglineError(ErrorCode.PARAM_INVALID, message);
}

function wsUrlOf(serverUrl) {
  let u;
  try {
    u = new URL(serverUrl, typeof location !== "undefined" ? location.href : undefined);
  } catch {
    throw bad(`serverUrl must be a URL like "http://127.0.0.1:8080", got ${JSON.stringify(serverUrl)}`);
  }
  const scheme = { "http:": "ws:", "https:": "wss:", "ws:": "ws:", "wss:": "wss:" }[u.protocol];
  if (!scheme) throw bad(`serverUrl must be an http(s) or ws(s) URL, got ${JSON.stringify(serverUrl)}`);
  let path = u.pathname.replace(/\/+$/, "");
  if (!path.endsWith("/v1/ws")) path += "/v1/ws";
  return `${scheme}//${u.host}${path}${u.search}`;
}

function randomId(prefix) {
  const a = new Uint8Array(8);
  crypto.getRandomValues(a);
  return prefix + Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
}

function roomOf(info) {
  const r = (info && info.room_id) || {};
  return { roomID: r.int_room_id || 0, strRoomID: r.str_room_id || "" };
}

function infoOf(info) {
  const i = info || {};
  const r = i.room_id || {};
  const out = {
    roomId: { intRoomId: r.int_room_id || 0, strRoomId: r.str_room_id || "" },
    role: i.role || 0,
    userData: i.user_data || "",
    chatGroupId: i.chat_group_id || "",
  };
  if ("ring_time_left" in i) out.ringTimeLeft = i.ring_time_left;
  if ("inviter_id" in i) out.inviterId = i.inviter_id;
  if ("inviter_nickname" in i) out.inviterNickname = i.inviter_nickname;
  if ("inviter_avatar" in i) out.inviterAvatar = i.inviter_avatar;
  return out;
}

function paramsToWire(p) {
  if (p === undefined || p === null) return undefined;
  if (typeof p !== "object") throw bad("params must be an object or omitted");
  const out = {};
  const room = p.roomId || p.roomID || p.strRoomID ? p.roomId || {} : null;
  if (room !== null) {
    const intRoom = room.intRoomId ?? (typeof p.roomID === "number" ? p.roomID : 0);
    const strRoom = room.strRoomId ?? p.strRoomID ?? "";
    out.room_id = { int_room_id: intRoom || 0, str_room_id: strRoom || "" };
  }
  if (p.timeout !== undefined) {
    if (!Number.isInteger(p.timeout) || p.timeout < 0 || p.timeout > 600) {
      throw bad(`params.timeout must be 0..600 seconds (0 = 30), got ${p.timeout}`);
    }
    out.timeout = p.timeout;
  }
  if (p.userData !== undefined) {
    if (typeof p.userData !== "string") throw bad("params.userData must be a string");
    if (new TextEncoder().encode(p.userData).length > 1000) {
      throw bad("params.userData is over 1000 bytes; store large data elsewhere and send a key");
    }
    out.user_data = p.userData;
  }
  const group = p.chatGroupId ?? p.chatGroupID;
  if (group !== undefined) out.chat_group_id = String(group);
  if (p.isEphemeralCall !== undefined) out.is_ephemeral_call = !!p.isEphemeralCall;
  if (p.offlinePushInfo) {
    const o = p.offlinePushInfo;
    out.offline_push_info = {
      title: o.title || "",
      desc: o.desc || o.description || "",
      extension: o.extension || "",
    };
  }
  return out;
}

function checkUserIds(op, ids, me) {
  if (!Array.isArray(ids)) throw bad(`${op}(): userIdList must be an array of user ids`);
  const out = [];
  for (const u of ids) {
    if (typeof u !== "string" || !USER_ID.test(u)) {
      throw bad(`${op}(): invalid user id ${JSON.stringify(u)}: use 1-32 characters of [A-Za-z0-9_-]`);
    }
    if (u !== me && !out.includes(u)) out.push(u);
  }
  if (!out.length) throw bad(`${op}(): userIdList is empty (after removing yourself and duplicates)`);
  if (out.length > MAX_CALLEES) {
    throw bad(`${op}(): ${out.length} users; at most ${MAX_CALLEES} can be invited (9 members per call)`);
  }
  return out;
}

function checkMedia(op, media) {
  if (media !== MediaType.AUDIO && media !== MediaType.VIDEO) {
    throw bad(`${op}(): mediaType must be MediaType.AUDIO (1) or MediaType.VIDEO (2), got ${media}`);
  }
  return media;
}

function recordOf(r) {
  return {
    callId: r.call_id,
    inviter: r.inviter,
    inviteList: r.invite_list || [],
    scene: r.scene || 0,
    mediaType: r.media_type || 0,
    groupId: r.group_id || "",
    role: r.role || 0,
    result: r.result || 0,
    beginTime: r.begin_time || 0,
    totalTime: r.total_time || 0,
  };
}

function elementOf(view) {
  if (typeof view === "string") {
    const el = document.getElementById(view);
    if (!el) throw bad(`no element with id ${JSON.stringify(view)}`);
    return el;
  }
  return view;
}

function attach(view, stream, { muted }) {
  const el = elementOf(view);
  if (!el) return null;
  el.autoplay = true;
  el.playsInline = true;
  el.muted = muted;
  if (el.srcObject !== stream) el.srcObject = stream;
  const p = el.play && el.play();
  if (p && p.catch) p.catch(() => {});
  return el;
}

/** One RTCPeerConnection with one remote user (docs/media.md §2-§3). */
class Peer {
  /** @param {CallEngine} engine @param {string} userId */
  constructor(engine, userId) {
    this.engine = engine;
    this.userId = userId;
    this.offerer = engine.userId < userId;
    this.pc = new RTCPeerConnection({
      iceServers: engine._iceServers,
      iceTransportPolicy: engine._iceTransportPolicy,
    });
    this.remoteStream = new MediaStream();
    this.audioEl = null;
    this.analyser = null;
    this.pending = [];
    this.closed = false;
    this.offering = false;
    this.needOffer = false;
    this.chain = Promise.resolve();
    this.everConnected = false;
    this.lastRx = { bytes: 0, at: performance.now(), lost: null, received: null };
    this.quality = NetworkQuality.UNKNOWN;
    this.stats = null;
    const pc = this.pc;
    pc.onicecandidate = (e) => {
      const c = e.candidate;
      this.engine._signal(this.userId, c ? { type: "candidate", ...c.toJSON() } : { type: "candidate", candidate: null });
    };
    pc.ontrack = (e) => this._onTrack(e.track);
    pc.onnegotiationneeded = () => {
      // Fires (in the stable state) after a transceiver's direction changed or ICE
      // restarted. Only the offerer offers; the answerer asks it to (docs/media.md §2).
      if (this.closed) return;
      if (this.offerer) this.negotiate(false);
      else if (pc.remoteDescription) this.engine._signal(this.userId, { type: "renegotiate" });
    };
    pc.oniceconnectionstatechange = () => {
      const s = pc.iceConnectionState;
      if (s === "connected" || s === "completed") this.everConnected = true;
      if (s === "failed" && this.offerer && !this.closed) {
        this.engine._log("ICE failed with", this.userId, "- restarting ICE");
        pc.restartIce();
      }
    };
  }

  /** Run `fn` after everything queued for this peer (signals are handled in order). */
  run(fn) {
    this.chain = this.chain.then(() => (this.closed ? undefined : fn())).catch((err) => {
      if (!this.closed) this.engine._fail(ErrorCode.SIGNALING_SEND_FAIL, `media with ${this.userId}: ${err && err.message ? err.message : err}`);
    });
    return this.chain;
  }

  /** Offerer: add the audio and video transceivers (in that order), then offer. */
  start() {
    this.offering = true; // negotiationneeded during setup is covered by the first offer
    return this.run(async () => {
      try {
        await this.engine._mediaReady();
        const e = this.engine;
        const audio = this.pc.addTransceiver("audio", { direction: "sendrecv", streams: [e._localStream] });
        const video = this.pc.addTransceiver("video", { direction: e._videoDirection(), streams: [e._localStream] });
        await audio.sender.replaceTrack(e._audioTrack());
        await video.sender.replaceTrack(e._videoTrack());
      } catch (err) {
        this.offering = false;
        throw err;
      }
      await this._offer();
    });
  }

  /** Offerer: make a new offer now, or once the current one is answered. `force`:
   * offer even if the browser sees no change (the answerer asked with renegotiate). */
  negotiate(force = true) {
    if (!this.offerer || this.closed) return;
    if (this.offering || this.pc.signalingState !== "stable") {
      if (force) this.needOffer = true;
      return;
    }
    this.offering = true;
    this.run(() => this._offer());
  }

  async _offer() {
    this.offering = true;
    try {
      if (this.pc.signalingState !== "stable") {
        this.needOffer = true;
        return;
      }
      this.needOffer = false;
      await this.pc.setLocalDescription(await this.pc.createOffer());
      await this.engine._signal(this.userId, { type: "offer", sdp: this.pc.localDescription.sdp });
    } finally {
      this.offering = false;
    }
  }

  /** A signal from this user (docs/media.md §1), in arrival order. */
  onSignal(data) {
    return this.run(async () => {
      const pc = this.pc;
      switch (data.type) {
        case "offer": {
          if (this.offerer) {
            this.engine._log("ignoring an offer from", this.userId, "(we are the offerer)");
            return;
          }
          await this.engine._mediaReady();
          await pc.setRemoteDescription({ type: "offer", sdp: data.sdp });
          await this.engine._applyLocal(this);
          const answer = await pc.createAnswer();
          await pc.setLocalDescription(answer);
          await this.engine._signal(this.userId, { type: "answer", sdp: pc.localDescription.sdp });
          await this._flushCandidates();
          return;
        }
        case "answer": {
          if (pc.signalingState !== "have-local-offer") {
            this.engine._log("ignoring an answer from", this.userId, "in state", pc.signalingState);
            return;
          }
          await pc.setRemoteDescription({ type: "answer", sdp: data.sdp });
          await this._flushCandidates();
          if (this.needOffer) await this._offer();
          return;
        }
        case "candidate": {
          if (!data.candidate) return; // end of candidates: nothing to do
          const c = { candidate: data.candidate, sdpMid: data.sdpMid ?? null, sdpMLineIndex: data.sdpMLineIndex ?? null };
          if (data.usernameFragment) c.usernameFragment = data.usernameFragment;
          if (!pc.remoteDescription) this.pending.push(c);
          else await pc.addIceCandidate(c);
          return;
        }
        case "renegotiate":
          if (!this.offerer) return;
          if (data.restart) {
            // The answerer's connection to us is dead (or it logged in again): start
            // over. An offer still waiting for its answer is the new start: send it
            // again. Otherwise restart ICE (new credentials, fresh candidates) and
            // offer; the answerer answers from a brand new connection (docs/media.md §2).
            if (pc.signalingState === "have-local-offer" && pc.localDescription) {
              this.engine._log("restart asked by", this.userId, "- sending the unanswered offer again");
              await this.engine._signal(this.userId, { type: "offer", sdp: pc.localDescription.sdp });
              return;
            }
            this.engine._log("restart asked by", this.userId, "- restarting ICE");
            pc.restartIce();
          }
          this.negotiate();
          return;
        case "bye":
          this.engine._dropPeer(this.userId);
          return;
        default:
          this.engine._log("ignoring signal of type", data.type, "from", this.userId);
      }
    });
  }

  async _flushCandidates() {
    const queued = this.pending;
    this.pending = [];
    for (const c of queued) {
      try {
        await this.pc.addIceCandidate(c);
      } catch (err) {
        this.engine._log("candidate from", this.userId, "refused:", err && err.message);
      }
    }
  }

  _onTrack(track) {
    if (!this.remoteStream.getTracks().includes(track)) this.remoteStream.addTrack(track);
    if (track.kind === "audio") {
      // Remote audio must play (unmuted) to be heard, and for its level to be measured.
      if (!this.audioEl) {
        this.audioEl = new Audio();
        this.audioEl.autoplay = true;
      }
      this.audioEl.srcObject = new MediaStream([track]);
      const p = this.audioEl.play();
      if (p && p.catch) p.catch((err) => this.engine._log("remote audio of", this.userId, "cannot play yet:", err && err.message));
      this.analyser = this.engine._meter(track);
    }
    this.engine._emit(RinglineEvent.REMOTE_STREAM, { userID: this.userId, stream: this.remoteStream });
    for (const view of this.engine._remoteViews.get(this.userId) || []) attach(view, this.remoteStream, { muted: true });
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    try {
      this.pc.close();
    } catch {
      // already closed
    }
    if (this.audioEl) {
      this.audioEl.pause();
      this.audioEl.srcObject = null;
    }
    if (this.analyser) this.analyser.disconnect();
  }
}

/**
 * The browser engine: one logged-in device of one user. See docs/web.md.
 */
export class CallEngine {
  /** @param {CallEngineOptions} options */
  constructor(options = {}) {
    if (!options || typeof options !== "object") throw bad("new CallEngine({serverUrl}) takes an options object");
    const base = options.serverUrl ?? (typeof location !== "undefined" ? location.origin : undefined);
    this._wsUrl = wsUrlOf(base);
    if (options.deviceId !== undefined && !DEVICE_ID.test(options.deviceId)) {
      throw bad("deviceId must be 1-64 characters of [A-Za-z0-9_.:-]");
    }
    this._options = {
      requestTimeout: 10000,
      endCallOnUnload: true,
      audio: true,
      video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15 } },
      debug: false,
      ...options,
    };
    this._deviceIdOption = options.deviceId;
    this._handlers = new Map();
    this._ws = null;
    this._ids = 1;
    this._pending = new Map();
    this._lastSeq = 0;
    this._session = "";
    this._login = null;
    this._online = false;
    this._onlineWaiters = [];
    this._heartbeat = 5;
    this._grace = 15;
    this._pingTimer = null;
    this._closing = false;
    this._iceServers = [];
    this._iceTransportPolicy = "all";
    this._resetCall();
    this._localStream = new MediaStream();
    this._localMeter = null;
    this._media = null; // promise of the local media being acquired
    this._remoteViews = new Map();
    this._localViews = [];
    this._audioCtx = null;
    this._timers = [];
    this.userId = "";
    this.deviceId = "";
    this._unload = () => this._leaveOnUnload();
  }

  // ------------------------------------------------------------------ events

  /**
   * Add a handler for `event`: a TUICallEvent or RinglineEvent value, or a vendor name
   * of VENDOR_EVENTS (`onUserJoin`, `onCallCancelled`, …).
   */
  on(event, fn) {
    if (typeof event !== "string" || !event) throw bad(`on(event, fn): event must be an event name such as TUICallEvent.ON_CALL_RECEIVED, got ${String(event)}`);
    if (typeof fn !== "function") throw bad(`on(${event}): the handler must be a function`);
    if (!this._handlers.has(event)) this._handlers.set(event, []);
    const list = this._handlers.get(event);
    if (!list.includes(fn)) list.push(fn);
  }

  /** Remove a handler added with on(); without `fn`, all handlers of `event`. */
  off(event, fn) {
    if (!fn) this._handlers.delete(event);
    else this._handlers.set(event, (this._handlers.get(event) || []).filter((f) => f !== fn));
  }

  /** The vendor's uni-app / mini-program spelling of on(). */
  addEventListener(event, fn) {
    this.on(event, fn);
  }

  /** The vendor's uni-app / mini-program spelling of off(). */
  removeEventListener(event, fn) {
    this.off(event, fn);
  }

  /** Deliver `event`, then the same under each vendor name of VENDOR_EVENTS that maps to it. */
  _emit(event, payload) {
    const p = vendorKeys(payload);
    this._deliver(event, p);
    for (const [name, extra] of VENDOR_ALIASES.get(event) || []) {
      if (name !== event) this._deliver(name, extra ? { ...p, ...extra(p) } : p);
    }
  }

  _deliver(event, payload) {
    for (const fn of [...(this._handlers.get(event) || [])]) {
      try {
        fn(payload);
      } catch (err) {
        console.error(`ringline: a ${event} handler failed`, err);
      }
    }
  }

  _fail(code, message) {
    this._log("error", code, message);
    this._emit(TUICallEvent.ERROR, { code, msg: message, message });
  }

  _log(...args) {
    if (this._options.debug) console.debug("ringline:", ...args);
  }

  // ------------------------------------------------------------------ state

  /** This device's current call id, or "" when idle. */
  get callId() { return this._call.callId; }
  /** CallStatus: NONE, WAITING (ringing/dialing), ACCEPT (connected). */
  get callStatus() { return this._call.status; }
  /** CallRole of this device in the current call. */
  get callRole() { return this._call.role; }
  /** MediaType of the current call (UNKNOWN when idle). */
  get mediaType() { return this._call.mediaType; }
  /** True between a successful init() and uninit() or the end of the session. */
  get isInitialized() { return !!this._login && !this._closing; }
  /** The local MediaStream (the microphone and camera tracks this device sends). */
  get localStream() { return this._localStream; }
  /** Users connected in the current call besides this one. */
  get remoteUsers() { return [...this._call.joined]; }
  /** The STUN/TURN servers the server announced at login (`ice_servers`, RTCIceServer shape). */
  get iceServers() { return this._iceServers.map((x) => ({ ...x })); }
  /** "relay" when the server sends all media through TURN, else "all" (`ice_transport_policy`). */
  get iceTransportPolicy() { return this._iceTransportPolicy; }

  /** The remote MediaStream of `userId` in the current call, or null. */
  getRemoteStream(userId) {
    const p = this._peers.get(userId);
    return p ? p.remoteStream : null;
  }

  /** The RTCPeerConnection with `userId` (diagnostics, getStats), or null. */
  getPeerConnection(userId) {
    const p = this._peers.get(userId);
    return p ? p.pc : null;
  }

  /** Show the local camera in a <video> element (or element id); muted. */
  startLocalView(view) {
    const el = elementOf(view);
    if (!this._localViews.includes(el)) this._localViews.push(el);
    attach(el, this._localStream, { muted: true });
  }

  /** Show `userId`'s video in a <video> element (or element id). Audio plays on its
   * own, so the element is muted. Works before the user's media arrives. */
  startRemoteView(userId, view) {
    const el = elementOf(view);
    const list = this._remoteViews.get(userId) || [];
    if (!list.includes(el)) list.push(el);
    this._remoteViews.set(userId, list);
    const p = this._peers.get(userId);
    if (p) attach(el, p.remoteStream, { muted: true });
  }

  /** Stop showing `userId`'s video in any element. */
  stopRemoteView(userId) {
    for (const el of this._remoteViews.get(userId) || []) el.srcObject = null;
    this._remoteViews.delete(userId);
  }

  _resetCall() {
    this._call = {
      callId: "",
      status: CallStatus.NONE,
      role: CallRole.NONE,
      mediaType: MediaType.UNKNOWN,
      info: null,
      joined: new Set(),
      lastNotConnected: null,
      beganAt: 0,
      micOn: true,
      camOn: false,
    };
    this._peers = new Map();
  }

  _setStatus(callId, status, role, mediaType) {
    const c = this._call;
    const changed = c.callId !== callId || c.status !== status || c.role !== role || c.mediaType !== mediaType;
    c.callId = callId;
    c.status = status;
    c.role = role;
    c.mediaType = mediaType;
    if (changed) {
      this._emit(RinglineEvent.STATUS_CHANGED, { callID: callId, callStatus: status, callRole: role, callMediaType: mediaType });
    }
  }

  // ------------------------------------------------------------------ session

  /**
   * Log this device in. Resolves when the server accepted the login.
   * @param {{sdkAppId?: number, SDKAppID?: number, userId?: string, userID?: string, userSig: string, multiDevice?: boolean}} args
   */
  async init(args = {}) {
    const sdkAppId = args.sdkAppId ?? args.SDKAppID ?? args.sdkAppID;
    const userId = args.userId ?? args.userID;
    const userSig = args.userSig;
    if (!Number.isInteger(sdkAppId) || sdkAppId < 1 || sdkAppId > 4294967295) {
      throw bad(`init(): sdkAppId must be an integer app id, got ${JSON.stringify(sdkAppId)}`);
    }
    if (typeof userId !== "string" || !USER_ID.test(userId)) {
      throw bad(`init(): userId must be 1-32 characters of [A-Za-z0-9_-], got ${JSON.stringify(userId)}`);
    }
    if (typeof userSig !== "string" || !userSig) throw bad("init(): userSig must be a non-empty string");
    if (this._login) {
      throw new RinglineError(
        this._login.user_id === userId ? ErrorCode.REQUEST_REPEATED : ErrorCode.REQUEST_REFUSED,
        `init(): already logged in as ${this._login.user_id}; call uninit() first`,
      );
    }
    let deviceId = this._deviceIdOption;
    if (!deviceId) {
      // Kept per tab, so a reload of this tab gets the end events of its calls.
      const key = `ringline.device.${userId}`;
      try {
        deviceId = sessionStorage.getItem(key) || randomId("web-");
        sessionStorage.setItem(key, deviceId);
      } catch {
        deviceId = randomId("web-");
      }
    }
    this._closing = false;
    this._login = {
      op: "login", v: PROTOCOL, sdk_app_id: sdkAppId, user_id: userId, user_sig: userSig,
      device_id: deviceId, multi_device: !!(args.multiDevice ?? this._multiDevice),
      platform: "Web",
    };
    this.userId = userId;
    this.deviceId = deviceId;
    try {
      await this._open(false);
    } catch (err) {
      this._login = null;
      this.userId = "";
      throw err;
    }
    if (typeof window !== "undefined" && this._options.endCallOnUnload) {
      window.addEventListener("pagehide", this._unload);
      window.addEventListener("beforeunload", this._unload);
    }
  }

  /** Log out and release the camera and microphone (idempotent). */
  async uninit() {
    if (!this._login) return;
    if (typeof window !== "undefined") {
      window.removeEventListener("pagehide", this._unload);
      window.removeEventListener("beforeunload", this._unload);
    }
    this._closing = true; // the server's close after the logout is not a connection loss
    if (this._online) {
      try {
        await this._request("logout", {}, 2000);
      } catch (err) {
        this._log("logout:", err.message);
      }
    }
    this._shutdown("uninit() was called");
  }

  _shutdown(why) {
    this._closing = true;
    this._endMedia();
    this._resetCall();
    clearInterval(this._pingTimer);
    this._pingTimer = null;
    const ws = this._ws;
    this._ws = null;
    this._online = false;
    if (ws && ws.readyState <= 1) ws.close(1000, "bye");
    for (const [, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new RinglineError(ErrorCode.INIT_FAIL, `the session ended (${why}); call init() again`));
    }
    this._pending.clear();
    this._login = null;
    this._session = "";
    this._lastSeq = 0;
    this._emit(RinglineEvent.CONNECTION_CHANGED, { state: "offline", reason: why });
  }

  /** Open a WebSocket and log in (or resume). Resolves with the result. */
  _open(resume) {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this._wsUrl);
      } catch (err) {
        reject(new RinglineError(ErrorCode.SIGNALING_SEND_FAIL, `cannot connect to ${this._wsUrl}: ${err.message}`));
        return;
      }
      this._ws = ws;
      let settled = false;
      const fail = (err) => {
        if (!settled) {
          settled = true;
          reject(err);
        }
      };
      const timer = setTimeout(() => {
        fail(new RinglineError(ErrorCode.SIGNALING_SEND_FAIL, `no answer from ${this._wsUrl}; is the server running?`));
        ws.close();
      }, this._options.requestTimeout);
      ws.onopen = () => {
        const id = this._ids++;
        const frame = resume
          ? { id, op: "resume", v: PROTOCOL, session: this._session, ack: this._lastSeq, platform: "Web" }
          : { id, ...this._login };
        this._pending.set(id, {
          resolve: (result) => {
            clearTimeout(timer);
            settled = true;
            this._onOnline(result, resume);
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
      ws.onmessage = (msg) => this._onFrame(ws, msg.data);
      ws.onclose = (e) => {
        clearTimeout(timer);
        fail(new RinglineError(ErrorCode.SIGNALING_SEND_FAIL, `connection closed (${e.code} ${e.reason || ""})`));
        this._onClose(ws, e);
      };
      ws.onerror = () => {};
    });
  }

  _onOnline(result, resumed) {
    this._afterDrop(result, resumed);
    this._session = result.session || this._session;
    if (!resumed) this._lastSeq = 0;
    this.deviceId = result.device_id || this.deviceId;
    this._heartbeat = result.heartbeat_interval || 5;
    this._grace = result.heartbeat_grace || 15;
    if (Array.isArray(result.ice_servers)) this._iceServers = result.ice_servers;
    // "relay": media only through the TURN servers (ringline serve --ice-transport-policy).
    this._iceTransportPolicy = result.ice_transport_policy === "relay" ? "relay" : "all";
    this._online = true;
    clearInterval(this._pingTimer);
    this._pingTimer = setInterval(() => this._ping(), this._heartbeat * 1000);
    const waiters = this._onlineWaiters;
    this._onlineWaiters = [];
    for (const w of waiters) w();
    this._emit(RinglineEvent.CONNECTION_CHANGED, { state: "online", resumed });
  }

  _ping() {
    const ws = this._ws;
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ op: "ping", ack: this._lastSeq }));
  }

  _onFrame(ws, text) {
    if (ws !== this._ws) return;
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      return;
    }
    if ("re" in f) {
      const p = this._pending.get(f.re);
      if (!p) return;
      this._pending.delete(f.re);
      clearTimeout(p.timer);
      if (f.ok) p.resolve(f.result || {});
      else p.reject(new RinglineError(f.code, f.message || "refused"));
    } else if ("ev" in f) {
      if (typeof f.seq === "number") {
        if (f.seq <= this._lastSeq) return; // already handled (replayed after a resume)
        this._lastSeq = f.seq;
      }
      try {
        this._onPush(f.ev, f.args || {});
      } catch (err) {
        console.error("ringline: handling", f.ev, "failed", err);
      }
    }
  }

  async _onClose(ws, e) {
    if (ws !== this._ws) return;
    this._online = false;
    clearInterval(this._pingTimer);
    if (this._closing || !this._login) return;
    // Codes after which logging in again would not help (protocol.md "Closing"). Any
    // other close (1001 server restart, 1006 network, a proxy's 1000) is a lost
    // connection: resume the session.
    const fatal = { 4001: "kicked offline", 4002: "user sig expired", 4003: "login failed", 4009: "too many unacknowledged events" };
    if (e.code in fatal) {
      this._shutdown(fatal[e.code]);
      return;
    }
    this._emit(RinglineEvent.CONNECTION_CHANGED, { state: "reconnecting" });
    const deadline = performance.now() + this._grace * 1000;
    let delay = 250;
    while (!this._closing && this._login && performance.now() < deadline + 30000) {
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 4000);
      if (this._closing || !this._login) return;
      try {
        await this._open(!!this._session && performance.now() < deadline);
        return;
      } catch (err) {
        if (err.code === ErrorCode.SESSION_UNKNOWN) {
          this._session = "";
          this._lastSeq = 0;
          // The session is gone: log in afresh; calls it had ended as OFFLINE and
          // their end events arrive now (same device id).
        } else if (err.code && err.code > 0 && err.code !== 8010) {
          this._fail(err.code, `logging in again failed: ${err.msg || err.message}`);
          this._shutdown("logging in again failed");
          return;
        }
      }
    }
    if (this._login && !this._online && !this._closing) {
      this._fail(ErrorCode.SIGNALING_SEND_FAIL, "lost the connection to the server; call init() again");
      this._shutdown("connection lost");
    }
  }

  /** Send request `op`; resolves with its result or rejects with a RinglineError. */
  async _request(op, args = {}, timeout = this._options.requestTimeout) {
    if (!this._login) {
      throw new RinglineError(ErrorCode.INIT_FAIL, `${op}(): the engine is not initialised; call init({sdkAppId, userId, userSig}) first`);
    }
    if (!this._online) {
      await new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new RinglineError(ErrorCode.SIGNALING_SEND_FAIL, `${op}(): not connected to the server`)), timeout);
        this._onlineWaiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    const id = this._ids++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new RinglineError(ErrorCode.SIGNALING_SEND_FAIL, `${op}(): no answer from the server within ${timeout / 1000} s; it may or may not have taken effect`));
      }, timeout);
      // `frame` is kept to send it again, unchanged, if the connection drops before
      // the answer and the session is resumed (_onOnline).
      const frame = JSON.stringify({ id, op, ...args });
      this._pending.set(id, { resolve, reject, timer, op, frame });
      this._ws.send(frame);
    });
  }

  /** Requests still waiting for an answer after a drop: after a resume with the
   * server's answers kept, send them again (same ids, oldest first: the server answers
   * one it already ran with its first answer); otherwise fail them with -1406. */
  _afterDrop(result, resumed) {
    const waiting = [...this._pending.entries()].filter(([, p]) => p.frame).sort(([x], [y]) => x - y);
    if (!waiting.length) return;
    if (resumed && result.answers_kept === true) {
      for (const [, p] of waiting) this._ws.send(p.frame);
      return;
    }
    const why = resumed ? "the server cannot replay its answer (it restarted, or is too old)" : "the session could not be resumed and a new one is opened";
    for (const [id, p] of waiting) {
      this._pending.delete(id);
      clearTimeout(p.timer);
      p.reject(new RinglineError(ErrorCode.SIGNALING_SEND_FAIL, `${p.op}(): the connection dropped before the server answered and ${why}; it may or may not have taken effect: check the call status or wait for the events, then retry`));
    }
  }

  /** Fire-and-forget (page unload): send the frame if the socket is open. */
  _sendNow(op, args) {
    const ws = this._ws;
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ id: this._ids++, op, ...args }));
  }

  _leaveOnUnload() {
    const c = this._call;
    if (!c.callId) return;
    // As the vendor's web kit does: a caller cancels, a ringing callee declines, a
    // connected member hangs up.
    const op = c.status === CallStatus.WAITING && c.role === CallRole.CALLED ? "reject" : "hangup";
    this._sendNow(op, { call_id: c.callId });
    this._endMedia();
  }

  // ------------------------------------------------------------------ pushes

  _onPush(name, a) {
    const c = this._call;
    const cid = a.call_id || "";
    const mine = cid && cid === c.callId;
    const base = { callID: cid };
    switch (name) {
      case "on_call_received": {
        if (!c.callId) {
          this._setStatus(cid, CallStatus.WAITING, CallRole.CALLED, a.media_type);
          c.info = a.info;
        }
        const info = infoOf(a.info);
        this._emit(TUICallEvent.ON_CALL_RECEIVED, {
          ...base, ...roomOf(a.info),
          callerId: a.caller_id, calleeIdList: a.callee_id_list || [], userIDList: a.callee_id_list || [],
          groupID: info.chatGroupId, callMediaType: a.media_type, callRole: CallRole.CALLED,
          userData: info.userData, inviterId: info.inviterId, inviterNickname: info.inviterNickname,
          inviterAvatar: info.inviterAvatar, ringTimeLeft: info.ringTimeLeft, info,
        });
        return;
      }
      case "on_call_begin": {
        const role = (a.info && a.info.role) || (mine ? c.role : CallRole.CALLED);
        this._setStatus(cid, CallStatus.ACCEPT, role, a.media_type);
        c.info = a.info;
        c.beganAt = Date.now();
        this._beginMedia();
        this._emit(TUICallEvent.ON_CALL_BEGIN, { ...base, ...roomOf(a.info), callRole: role, callMediaType: a.media_type, info: infoOf(a.info) });
        return;
      }
      case "on_call_end":
      case "on_call_not_connected": {
        const payload = {
          ...base, ...roomOf(a.info), callMediaType: a.media_type, callRole: (a.info && a.info.role) || c.role,
          reason: a.reason, userID: a.user_id, info: infoOf(a.info),
        };
        if (mine) {
          this._endMedia();
          this._resetCall();
          this._setStatus("", CallStatus.NONE, CallRole.NONE, MediaType.UNKNOWN);
        }
        if (name === "on_call_end") {
          this._emit(TUICallEvent.CALL_END, { ...payload, totalTime: a.total_time, callEnd: a.total_time });
        } else {
          this._call.lastNotConnected = payload;
          this._emit(TUICallEvent.ON_CALL_NOT_CONNECTED, payload);
        }
        return;
      }
      case "on_call_cancelled": {
        const last = this._call.lastNotConnected || {};
        this._emit(TUICallEvent.ON_CALL_CANCELED, {
          ...base, userID: a.user_id, reason: CANCEL_REASON[last.reason] || "normal",
          callMediaType: last.callMediaType, callRole: last.callRole, roomID: last.roomID, strRoomID: last.strRoomID,
        });
        return;
      }
      case "on_call_media_type_changed": {
        if (mine) {
          c.mediaType = a.new_call_media_type;
          this._switchMedia(a.new_call_media_type);
          this._emit(RinglineEvent.STATUS_CHANGED, { callID: cid, callStatus: c.status, callRole: c.role, callMediaType: c.mediaType });
        }
        this._emit(TUICallEvent.CALL_TYPE_CHANGED, { ...base, oldCallType: a.old_call_media_type, newCallType: a.new_call_media_type });
        return;
      }
      case "on_user_inviting":
        this._emit(TUICallEvent.ON_USER_INVITING, { ...base, userID: a.user_id });
        return;
      case "on_user_reject":
        this._emit(TUICallEvent.REJECT, { ...base, userID: a.user_id });
        return;
      case "on_user_no_response":
        this._emit(TUICallEvent.NO_RESP, { ...base, userID: a.user_id, sponsor: this.userId, userIDList: [a.user_id] });
        return;
      case "on_user_line_busy":
        this._emit(TUICallEvent.LINE_BUSY, { ...base, userID: a.user_id });
        return;
      case "on_user_join":
        if (mine) {
          c.joined.add(a.user_id);
          this._connectPeer(a.user_id);
        }
        this._emit(TUICallEvent.USER_ENTER, { ...base, userID: a.user_id });
        return;
      case "on_user_leave":
        if (mine) {
          c.joined.delete(a.user_id);
          this._dropPeer(a.user_id);
        }
        this._emit(TUICallEvent.USER_LEAVE, { ...base, userID: a.user_id });
        return;
      case "on_user_video_available":
        this._emit(TUICallEvent.USER_VIDEO_AVAILABLE, { ...base, userID: a.user_id, isVideoAvailable: !!a.is_video_available });
        return;
      case "on_user_audio_available":
        this._emit(TUICallEvent.USER_AUDIO_AVAILABLE, { ...base, userID: a.user_id, isAudioAvailable: !!a.is_audio_available });
        return;
      case "on_signal":
        if (mine && a.data && typeof a.data === "object") this._onSignal(a.from_user_id, a.data);
        return;
      case "on_kicked_offline":
        this._emit(TUICallEvent.KICKED_OUT, {});
        return;
      case "on_user_sig_expired":
        this._emit(TUICallEvent.USER_SIG_EXPIRED, {});
        return;
      default:
        this._log("ignoring push", name);
    }
  }

  // ------------------------------------------------------------------ calls (docs/spec.md §3)

  /**
   * Call one user or several (at most 8). Resolves with `{callId}`.
   * `calls(userIdList, mediaType, params?)` or the vendor's object form
   * `calls({userIDList, type, timeout?, userData?, chatGroupID?, roomID?, strRoomID?})`.
   */
  async calls(userIdList, mediaType, params) {
    if (userIdList && !Array.isArray(userIdList) && typeof userIdList === "object") {
      const o = userIdList;
      return this.calls(o.userIDList ?? o.userIdList, o.type ?? o.mediaType ?? o.callMediaType, o.params ?? o);
    }
    const ids = checkUserIds("calls", userIdList, this.userId);
    const media = checkMedia("calls", mediaType);
    const wire = paramsToWire(params);
    if (!this._login) throw new RinglineError(ErrorCode.INIT_FAIL, "calls(): the engine is not initialised; call init() first");
    // The server decides whether this device may call now (already in a call: -1203;
    // calling the user whose call rings here answers it, docs/spec.md §5 row 8).
    this._acquireMedia(media);
    let result;
    try {
      result = await this._request("calls", { user_ids: ids, media_type: media, ...(wire ? { params: wire } : {}) });
    } catch (err) {
      if (!this._call.callId) this._endMedia();
      throw err;
    }
    const cid = result.call_id;
    if (cid === this._call.callId) {
      // Glare (docs/spec.md §5 row 8): our call answered the one ringing here.
      this._setStatus(cid, CallStatus.ACCEPT, this._call.role, this._call.mediaType);
    } else if (this._call.status !== CallStatus.ACCEPT) {
      this._setStatus(cid, CallStatus.WAITING, CallRole.CALLER, media);
    }
    return { callId: cid, callID: cid };
  }

  /** Deprecated: `calls([userId], mediaType, params)`. */
  async call(userId, mediaType, params) {
    if (userId && typeof userId === "object") return this.calls({ ...userId, userIDList: [userId.userID ?? userId.userId] });
    return this.calls([userId], mediaType, params);
  }

  /** Answer the call ringing on this device; onCallBegin follows. */
  async accept() {
    const cid = this._requireCall("accept", "wait for onCallReceived");
    this._acquireMedia(this._call.mediaType);
    try {
      await this._request("accept", { call_id: cid });
    } catch (err) {
      if (this._call.status !== CallStatus.ACCEPT) this._endMedia();
      throw err;
    }
  }

  /** Decline the call ringing on this device. */
  async reject() {
    await this._leave("reject", "wait for onCallReceived");
  }

  /** Stop ringing on this device only; the invitation stays until its timeout. */
  async ignore() {
    await this._leave("ignore", "wait for onCallReceived");
  }

  /** Leave the current call (cancel it if you placed it and nobody answered). */
  async hangup() {
    const c = this._call;
    if (c.status === CallStatus.ACCEPT) for (const u of c.joined) this._signal(u, { type: "bye" });
    await this._leave("hangup", "there is nothing to hang up");
  }

  /** Invite more users to the current call. Resolves with the ids invited. */
  async inviteUser(userIdList, params) {
    if (userIdList && !Array.isArray(userIdList) && typeof userIdList === "object") {
      return this.inviteUser(userIdList.userIDList ?? userIdList.userIdList, userIdList.params ?? userIdList);
    }
    const cid = this._requireCall("inviteUser", "place or accept a call first");
    const ids = checkUserIds("inviteUser", userIdList, this.userId);
    const wire = paramsToWire(params && params.userIDList ? { timeout: params.timeout, offlinePushInfo: params.offlinePushInfo } : params);
    const r = await this._request("invite_user", { call_id: cid, user_ids: ids, ...(wire ? { params: wire } : {}) });
    return r.user_ids || [];
  }

  /** Join an ongoing call you were invited to (or whose chat group you are in). */
  async join(callId) {
    if (callId && typeof callId === "object") callId = callId.callId ?? callId.callID;
    if (typeof callId !== "string" || !callId || callId.length > 128) throw bad("join(): callId must be a call id string");
    if (this._call.callId && this._call.callId !== callId) {
      throw new RinglineError(ErrorCode.REQUEST_REFUSED, `join(): already in call ${this._call.callId}; hang up first`);
    }
    this._acquireMedia(MediaType.AUDIO);
    try {
      await this._request("join", { call_id: callId });
    } catch (err) {
      if (this._call.status !== CallStatus.ACCEPT) this._endMedia();
      throw err;
    }
    if (this._call.callId !== callId) this._setStatus(callId, CallStatus.ACCEPT, CallRole.CALLED, this._call.mediaType);
  }

  /** Switch the whole call to audio or video; onCallTypeChanged follows everywhere. */
  async switchCallMediaType(mediaType) {
    if (mediaType && typeof mediaType === "object") mediaType = mediaType.type ?? mediaType.mediaType ?? mediaType.newMediaType;
    const cid = this._requireCall("switchCallMediaType", "place or accept a call first");
    const media = checkMedia("switchCallMediaType", mediaType);
    await this._request("switch_call_media_type", { call_id: cid, media_type: media });
  }

  /** Publish video (video calls); `view` optionally shows the local preview. */
  async openCamera(view) {
    const cid = this._requireCall("openCamera", "open the camera once in a call");
    if (this._call.mediaType !== MediaType.VIDEO) {
      throw new RinglineError(ErrorCode.SCENE_NOT_SUPPORTED, "openCamera(): this is an audio call; switchCallMediaType(MediaType.VIDEO) first");
    }
    if (view) this.startLocalView(view);
    await this._cameraOn();
    if (!this._videoTrack()) throw new RinglineError(ErrorCode.DEVICE_ERROR, "openCamera(): no camera could be opened");
    await this._request("open_camera", { call_id: cid });
  }

  /** Stop publishing video and release the camera. */
  async closeCamera() {
    const cid = this._requireCall("closeCamera", "close the camera once in a call");
    this._cameraOff();
    await this._request("close_camera", { call_id: cid });
  }

  /** Unmute: send the microphone again. */
  async openMicrophone() {
    const cid = this._requireCall("openMicrophone", "open the microphone once in a call");
    this._call.micOn = true;
    const t = this._audioTrack();
    if (t) t.enabled = true;
    await this._request("open_microphone", { call_id: cid });
  }

  /** Mute: send silence (the track stays, so unmuting needs no renegotiation). */
  async closeMicrophone() {
    const cid = this._requireCall("closeMicrophone", "close the microphone once in a call");
    this._call.micOn = false;
    const t = this._audioTrack();
    if (t) t.enabled = false;
    await this._request("close_microphone", { call_id: cid });
  }

  /** Nickname (at most 500 bytes) and avatar URL shown with your invitations. */
  async setSelfInfo(nickname, avatar = "") {
    if (nickname && typeof nickname === "object") {
      avatar = nickname.avatar ?? "";
      nickname = nickname.nickName ?? nickname.nickname ?? "";
    }
    if (typeof nickname !== "string" || typeof avatar !== "string") throw bad("setSelfInfo(): nickname and avatar must be strings");
    await this._request("set_self_info", { nickname, avatar });
  }

  /** Let this user stay logged in on several devices (before init: for the login). */
  async enableMultiDeviceAbility(enable) {
    if (typeof enable !== "boolean") throw bad("enableMultiDeviceAbility(): enable must be a boolean");
    this._multiDevice = enable;
    if (!this._login || !this._online) return;
    await this._request("enable_multi_device_ability", { enable });
    this._login.multi_device = enable;
  }

  /**
   * This user's call history, newest first.
   * @param {{resultType?: number, limit?: number, begin?: number, end?: number}} [filter]
   */
  async queryRecentCalls(filter = {}) {
    const args = { result_type: filter.resultType ?? 0, limit: filter.limit ?? 50 };
    if (filter.begin !== undefined) args.begin = filter.begin;
    if (filter.end !== undefined) args.end = filter.end;
    if (!Number.isInteger(args.limit) || args.limit < 1 || args.limit > 200) throw bad("queryRecentCalls(): limit must be 1..200");
    const r = await this._request("query_recent_calls", args);
    return (r.records || []).map(recordOf);
  }

  /** Hide entries of this user's history. Resolves with the ids deleted. */
  async deleteRecordCalls(callIdList) {
    if (!Array.isArray(callIdList) || !callIdList.length) throw bad("deleteRecordCalls(): pass a non-empty array of call ids");
    const r = await this._request("delete_record_calls", { call_ids: callIdList });
    return r.deleted || [];
  }

  /** Replace the user sig (after onUserSigExpired, or before it expires). */
  async renewUserSig(userSig) {
    if (typeof userSig !== "string" || !userSig) throw bad("renewUserSig(): userSig must be a non-empty string");
    await this._request("renew_user_sig", { user_sig: userSig });
    if (this._login) this._login.user_sig = userSig;
  }

  _requireCall(op, hint) {
    if (!this._login) throw new RinglineError(ErrorCode.INIT_FAIL, `${op}(): the engine is not initialised; call init() first`);
    const cid = this._call.callId;
    if (!cid) throw new RinglineError(ErrorCode.REQUEST_REFUSED, `${op}(): this device has no current call; ${hint}`);
    return cid;
  }

  async _leave(op, hint) {
    const cid = this._requireCall(op, hint);
    await this._request(op, { call_id: cid });
    if (this._call.callId === cid) {
      // This device is done with the call; its end event (onCallEnd /
      // onCallNotConnected) still follows from the server.
      this._endMedia();
      this._resetCall();
      this._setStatus("", CallStatus.NONE, CallRole.NONE, MediaType.UNKNOWN);
    }
  }

  // ------------------------------------------------------------------ media

  _audioTrack() {
    return this._localStream.getAudioTracks()[0] || null;
  }

  _videoTrack() {
    const c = this._call;
    if (c.mediaType !== MediaType.VIDEO || !c.camOn) return null;
    return this._localStream.getVideoTracks()[0] || null;
  }

  _videoDirection() {
    return this._call.mediaType === MediaType.VIDEO ? "sendrecv" : "inactive";
  }

  /** Start getting the microphone (and the camera for video); never throws. */
  _acquireMedia(media) {
    if (this._media) return this._media;
    this._media = (async () => {
      const wantVideo = media === MediaType.VIDEO && this._options.video !== false;
      try {
        if (this._options.audio !== false && !this._audioTrack()) {
          const s = await navigator.mediaDevices.getUserMedia({ audio: this._options.audio });
          for (const t of s.getAudioTracks()) this._addLocal(t);
        }
      } catch (err) {
        this._fail(ErrorCode.DEVICE_ERROR, `the microphone could not be opened: ${err.message || err.name}`);
      }
      if (wantVideo) {
        this._call.camOn = true;
        await this._getCamera();
      }
      this._emit(RinglineEvent.LOCAL_STREAM, { stream: this._localStream });
    })();
    return this._media;
  }

  async _getCamera() {
    if (this._localStream.getVideoTracks().length) return;
    if (this._options.video === false) {
      this._call.camOn = false; // this engine was made without a camera
      return;
    }
    try {
      const s = await navigator.mediaDevices.getUserMedia({ video: this._options.video });
      for (const t of s.getVideoTracks()) this._addLocal(t);
    } catch (err) {
      this._call.camOn = false;
      this._fail(ErrorCode.DEVICE_ERROR, `the camera could not be opened: ${err.message || err.name}`);
    }
  }

  _addLocal(track) {
    this._localStream.addTrack(track);
    if (track.kind === "audio") {
      track.enabled = this._call.micOn;
      if (this._localMeter) this._localMeter.disconnect();
      this._localMeter = this._meter(track);
    }
    // A device that stops (unplugged, revoked) counts as closed: tell the others.
    track.addEventListener("ended", () => {
      const cid = this._call.callId;
      if (!cid || !this._localStream.getTracks().includes(track)) return;
      this._localStream.removeTrack(track);
      if (track.kind === "video") {
        this._call.camOn = false;
        this._replaceVideo(null);
        this._request("close_camera", { call_id: cid }).catch(() => {});
      } else {
        this._request("close_microphone", { call_id: cid }).catch(() => {});
      }
    });
    for (const el of this._localViews) attach(el, this._localStream, { muted: true });
  }

  _mediaReady() {
    return this._media || this._acquireMedia(this._call.mediaType);
  }

  /** on_call_begin: media for the call, the meters, and the real device state. */
  async _beginMedia() {
    const cid = this._call.callId;
    await this._acquireMedia(this._call.mediaType);
    if (this._call.callId !== cid) return;
    if (!this._timers.length) {
      this._timers.push(setInterval(() => this._pollQuality(), QUALITY_INTERVAL_MS));
      this._timers.push(setInterval(() => this._pollVolume(), VOLUME_INTERVAL_MS));
    }
    // The server assumes microphone on, camera on in video calls: correct it from
    // the real tracks.
    if (!this._audioTrack()) this._request("close_microphone", { call_id: cid }).catch(() => {});
    else if (!this._call.micOn) this._request("close_microphone", { call_id: cid }).catch(() => {});
    if (this._call.mediaType === MediaType.VIDEO && !this._videoTrack()) {
      this._request("close_camera", { call_id: cid }).catch(() => {});
    }
  }

  _endMedia() {
    for (const t of this._timers) clearInterval(t);
    this._timers = [];
    for (const [, p] of this._peers) p.close();
    this._peers = new Map();
    for (const t of this._localStream.getTracks()) {
      t.stop();
      this._localStream.removeTrack(t);
    }
    if (this._localMeter) this._localMeter.disconnect();
    this._localMeter = null;
    this._media = null;
    for (const [userId] of this._remoteViews) this.stopRemoteView(userId);
    if (this._audioCtx) {
      this._audioCtx.close().catch(() => {});
      this._audioCtx = null;
    }
  }

  /** Answerer: put our tracks on the transceivers the offer created (audio, video). */
  async _applyLocal(peer) {
    const ts = peer.pc.getTransceivers();
    const audio = ts.find((t) => t.receiver.track.kind === "audio");
    const video = ts.find((t) => t.receiver.track.kind === "video");
    if (audio) {
      audio.direction = "sendrecv";
      await audio.sender.replaceTrack(this._audioTrack());
      audio.sender.setStreams(this._localStream);
    }
    if (video) {
      video.direction = this._videoDirection();
      await video.sender.replaceTrack(this._videoTrack());
      video.sender.setStreams(this._localStream);
    }
  }

  async _replaceVideo(track) {
    for (const [, p] of this._peers) {
      const t = p.pc.getTransceivers().find((x) => x.receiver.track.kind === "video");
      if (t && !p.closed) await t.sender.replaceTrack(track).catch(() => {});
    }
  }

  /** Open the camera (if needed) and send it on every connection. */
  async _cameraOn() {
    this._call.camOn = true;
    await this._getCamera();
    await this._replaceVideo(this._videoTrack());
    this._emit(RinglineEvent.LOCAL_STREAM, { stream: this._localStream });
  }

  _cameraOff() {
    this._call.camOn = false;
    this._replaceVideo(null);
    for (const t of this._localStream.getVideoTracks()) {
      t.stop();
      this._localStream.removeTrack(t);
    }
    this._emit(RinglineEvent.LOCAL_STREAM, { stream: this._localStream });
  }

  /** The call switched media type: camera and video direction on every connection. */
  async _switchMedia(media) {
    const cid = this._call.callId;
    if (media === MediaType.VIDEO) {
      await this._cameraOn();
      if (this._call.callId === cid && !this._videoTrack()) this._request("close_camera", { call_id: cid }).catch(() => {});
    } else {
      this._cameraOff();
    }
    for (const [, p] of this._peers) {
      const t = p.pc.getTransceivers().find((x) => x.receiver.track.kind === "video");
      if (!t || p.closed) continue;
      t.direction = this._videoDirection();
      await t.sender.replaceTrack(this._videoTrack()).catch(() => {});
      // The direction change fires negotiationneeded: the offerer offers, the
      // answerer sends renegotiate. Nudge the offerer in case the browser coalesced it.
      if (p.offerer) p.negotiate(false);
    }
  }

  _connectPeer(userId) {
    if (this._peers.has(userId) || this._call.status !== CallStatus.ACCEPT) return this._peers.get(userId);
    const p = new Peer(this, userId);
    this._peers.set(userId, p);
    for (const el of this._remoteViews.get(userId) || []) attach(el, p.remoteStream, { muted: true });
    if (p.offerer) p.start();
    return p;
  }

  _dropPeer(userId) {
    const p = this._peers.get(userId);
    if (!p) return;
    this._peers.delete(userId);
    p.close();
  }

  _onSignal(from, data) {
    let p = this._peers.get(from);
    if (!p) {
      // The offer may come before we processed on_user_join of its sender.
      if (data.type !== "offer") return;
      p = this._connectPeer(from);
      if (!p) return;
    }
    p.onSignal(data);
  }

  _signal(to, data) {
    const cid = this._call.callId;
    if (!cid || this._call.status !== CallStatus.ACCEPT) return Promise.resolve();
    return this._request("signal", { call_id: cid, to_user_id: to, data }).catch((err) => {
      // A peer that just left cannot be signalled any more: not an error.
      if (err.code !== ErrorCode.REQUEST_REFUSED && err.code !== ErrorCode.CALL_NOT_FOUND) {
        this._fail(err.code, `signalling ${to} failed: ${err.msg || err.message}`);
      }
    });
  }

  // ------------------------------------------------------------------ meters

  /** An AnalyserNode on `track` (null if Web Audio is unavailable). */
  _meter(track) {
    try {
      if (!this._audioCtx) this._audioCtx = new AudioContext();
      const ctx = this._audioCtx;
      if (ctx.state === "suspended") ctx.resume().catch(() => {});
      const src = ctx.createMediaStreamSource(new MediaStream([track]));
      const an = ctx.createAnalyser();
      // ~170 ms at 48 kHz: the window the volume is measured over (docs/media.md §5).
      an.fftSize = 8192;
      src.connect(an);
      const buf = new Float32Array(an.fftSize);
      return {
        level: () => {
          if (ctx.state !== "running" || track.readyState !== "live" || !track.enabled) return null;
          an.getFloatTimeDomainData(buf);
          let sum = 0;
          for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
          return Math.sqrt(sum / buf.length);
        },
        disconnect: () => {
          try {
            src.disconnect();
          } catch {
            // already disconnected
          }
        },
      };
    } catch (err) {
      this._log("no audio meter:", err && err.message);
      return null;
    }
  }

  async _pollVolume() {
    const c = this._call;
    if (c.status !== CallStatus.ACCEPT) return;
    const volumeMap = [];
    const local = this._audioTrack();
    let level = 0;
    if (local && c.micOn) {
      const l = this._localMeter && this._localMeter.level();
      level = l ?? (await this._statsLevel(null));
    }
    volumeMap.push({ userId: this.userId, audioVolume: volumeOf(level) });
    for (const [userId, p] of this._peers) {
      let l = p.analyser && p.analyser.level();
      if (l === null || l === undefined) l = await this._statsLevel(p);
      volumeMap.push({ userId, audioVolume: volumeOf(l) });
    }
    if (this._call.callId !== c.callId) return;
    this._emit(TUICallEvent.USER_VOICE_VOLUME, { callID: c.callId, volumeMap });
  }

  /** Fallback level from statistics: inbound audioLevel, or the local media-source. */
  async _statsLevel(peer) {
    const pcs = peer ? [peer.pc] : [...this._peers.values()].map((p) => p.pc).slice(0, 1);
    for (const pc of pcs) {
      try {
        const stats = await pc.getStats();
        for (const s of stats.values()) {
          if (peer && s.type === "inbound-rtp" && s.kind === "audio" && typeof s.audioLevel === "number") return s.audioLevel;
          if (!peer && s.type === "media-source" && s.kind === "audio" && typeof s.audioLevel === "number") return s.audioLevel;
        }
      } catch {
        // closed meanwhile
      }
    }
    return 0;
  }

  async _pollQuality() {
    const c = this._call;
    if (c.status !== CallStatus.ACCEPT || !this._peers.size) return;
    const list = [];
    let worst = NetworkQuality.UNKNOWN;
    for (const [userId, p] of this._peers) {
      const q = await this._qualityOf(p);
      list.push({ userId, quality: q });
      if (q !== NetworkQuality.UNKNOWN) worst = Math.max(worst, q);
    }
    if (this._call.callId !== c.callId) return;
    list.unshift({ userId: this.userId, quality: worst });
    this._emit(TUICallEvent.ON_USER_NETWORK_QUALITY_CHANGED, { callID: c.callId, networkQualityList: list });
  }

  /** docs/media.md §5: rtt, loss over the last interval, jitter -> NetworkQuality. */
  async _qualityOf(p) {
    const pc = p.pc;
    const ice = pc.iceConnectionState;
    if (p.closed) return NetworkQuality.DOWN;
    if (ice === "failed" || ice === "disconnected") return (p.quality = NetworkQuality.DOWN);
    if (!p.everConnected) return (p.quality = NetworkQuality.UNKNOWN);
    let stats;
    try {
      stats = await pc.getStats();
    } catch {
      return p.quality;
    }
    let rtt = null;
    let jitter = null;
    let lost = 0;
    let received = 0;
    let bytes = 0;
    let pairId = null;
    for (const s of stats.values()) {
      if (s.type === "transport") {
        pairId = s.selectedCandidatePairId || pairId;
        bytes += s.bytesReceived || 0;
      } else if (s.type === "inbound-rtp") {
        lost += s.packetsLost || 0;
        received += s.packetsReceived || 0;
        if (typeof s.jitter === "number") jitter = Math.max(jitter ?? 0, s.jitter * 1000);
      }
    }
    const pair = pairId && stats.get(pairId);
    if (pair && typeof pair.currentRoundTripTime === "number") rtt = pair.currentRoundTripTime * 1000;
    if (rtt === null) {
      for (const s of stats.values()) {
        if (s.type === "remote-inbound-rtp" && typeof s.roundTripTime === "number") rtt = Math.max(rtt ?? 0, s.roundTripTime * 1000);
      }
    }
    const now = performance.now();
    const prev = p.lastRx;
    let loss = null;
    if (prev.lost !== null) {
      const dLost = Math.max(0, lost - prev.lost);
      const dRecv = Math.max(0, received - prev.received);
      loss = dLost + dRecv > 0 ? (100 * dLost) / (dLost + dRecv) : 0;
    }
    const rxAt = bytes > prev.bytes ? now : prev.at;
    p.lastRx = { bytes, at: rxAt, lost, received };
    p.stats = { rtt, loss, jitter, bytesReceived: bytes };
    if (now - rxAt >= DOWN_AFTER_MS) return (p.quality = NetworkQuality.DOWN);
    return (p.quality = gradeQuality({ rtt, loss, jitter }));
  }
}

export default CallEngine;
