// Ringline browser engine: CallEngine, the public engine (docs/web.md). It keeps this
// device's call state, turns server pushes into events, and validates and sends the
// calls API's requests. The connection is a Session (session.js), the media a Mesh
// (peer.js: peer to peer, or through the call's SFU room once on_sfu came), the event
// names and payloads are in events.js, the protocol's constants in protocol.js. Entry point for users: ringline.js.

import {
  CallRole,
  CallStatus,
  DEFAULT_RING_TIMEOUT,
  DEVICE_ID,
  ErrorCode,
  MAX_CALL_ID,
  MAX_CALLEES,
  MAX_DEVICE_ID,
  MAX_RECENT,
  MAX_RING_TIMEOUT,
  MAX_USER_DATA_BYTES,
  MediaType,
  RinglineError,
  USER_ID,
  bad,
} from "./protocol.js";
import {
  Emitter,
  RinglineEvent,
  TUICallEvent,
  beginPayload,
  cancelledPayload,
  endPayload,
  memberEvent,
  receivedPayload,
  recordOf,
} from "./events.js";
import { Session, wsUrlsOf } from "./session.js";
import { Mesh } from "./peer.js";

/** @typedef {import("./ringline.d.ts").CallEngineOptions} CallEngineOptions */

/**
 * This device's current call ("" and NONE when idle).
 * @typedef {object} CallState
 * @property {string} callId
 * @property {import("./ringline.d.ts").CallStatusValue} status
 * @property {import("./ringline.d.ts").CallRoleValue} role
 * @property {import("./ringline.d.ts").MediaTypeValue} mediaType
 * @property {any} info the wire `info` of the last push about the call
 * @property {Set<string>} joined users connected in the call besides this one
 * @property {any} lastNotConnected the last onCallNotConnected payload (for onCallCanceled)
 * @property {number} beganAt
 * @property {boolean} micOn
 * @property {boolean} camOn
 */

/**
 * The browser engine: one logged-in device of one user. See docs/web.md.
 */
export class CallEngine extends Emitter {
  /** @param {CallEngineOptions} options */
  constructor(options = {}) {
    super();
    if (!options || typeof options !== "object") throw bad("new CallEngine({serverUrl}) takes an options object");
    const base = options.serverUrl ?? (typeof location !== "undefined" ? location.origin : undefined);
    const wsUrls = wsUrlsOf(base);
    /** The server URLs as given. */
    this._serverUrls = Array.isArray(base) ? [...base] : [base];
    if (options.deviceId !== undefined && !DEVICE_ID.test(options.deviceId)) {
      throw bad(`deviceId must be 1-${MAX_DEVICE_ID} characters of [A-Za-z0-9_.:-]`);
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
    /** @type {boolean | undefined} enableMultiDeviceAbility() before init() */
    this._multiDevice = undefined;
    this._sess = new Session(this, wsUrls, this._options);
    this._mesh = new Mesh(this);
    this._resetCall();
    this.userId = "";
    this.deviceId = "";
    this._unload = () => this._leaveOnUnload();
  }

  /** The server URL in use, as given (while reconnecting: the one tried next; before
   * init() and after the end: the one the next init() tries first). */
  get serverUrl() { return this._serverUrls[this._sess.at]; }
  /** Every server URL given, in order. */
  get serverUrls() { return [...this._serverUrls]; }

  /** The current WebSocket (diagnostics and tests), or null. */
  get _ws() { return this._sess.ws; }

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
  get isInitialized() { return !!this._sess.login && !this._sess.closing; }
  /** The local MediaStream (the microphone and camera tracks this device sends). */
  get localStream() { return this._mesh.localStream; }
  /** Users connected in the current call besides this one. */
  get remoteUsers() { return [...this._call.joined]; }
  /** The STUN/TURN servers the server announced at login (`ice_servers`, RTCIceServer shape). */
  get iceServers() { return this._sess.iceServers.map((x) => ({ ...x })); }
  /** "relay" when the server sends all media through TURN, else "all" (`ice_transport_policy`). */
  get iceTransportPolicy() { return this._sess.iceTransportPolicy; }

  /** The remote MediaStream of `userId` in the current call, or null. */
  getRemoteStream(userId) {
    const p = this._mesh.peers.get(userId);
    return p ? p.remoteStream : null;
  }

  /** The RTCPeerConnection with `userId` (diagnostics, getStats), or null. */
  getPeerConnection(userId) {
    const p = this._mesh.peers.get(userId);
    return p ? p.pc : null;
  }

  /** Show the local camera in a <video> element (or element id); muted. */
  startLocalView(view) {
    this._mesh.startLocalView(view);
  }

  /** Show `userId`'s video in a <video> element (or element id). Audio plays on its
   * own, so the element is muted. Works before the user's media arrives. */
  startRemoteView(userId, view) {
    this._mesh.startRemoteView(userId, view);
  }

  /** Stop showing `userId`'s video in any element. */
  stopRemoteView(userId) {
    this._mesh.stopRemoteView(userId);
  }

  _resetCall() {
    /** @type {CallState} */
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
    this._mesh.peers = new Map();
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
   * @param {{sdkAppId?: number, SDKAppID?: number, sdkAppID?: number, userId?: string, userID?: string, userSig?: string, multiDevice?: boolean}} [args]
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
    const login = this._sess.login;
    if (login) {
      throw new RinglineError(
        login.user_id === userId ? ErrorCode.REQUEST_REPEATED : ErrorCode.REQUEST_REFUSED,
        `init(): already logged in as ${login.user_id}; call uninit() first`,
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
    this.userId = userId;
    this.deviceId = deviceId;
    try {
      await this._sess.start({
        sdk_app_id: sdkAppId, user_id: userId, user_sig: userSig,
        device_id: deviceId, multi_device: !!(args.multiDevice ?? this._multiDevice),
        platform: "Web",
      });
    } catch (err) {
      this._sess.login = null;
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
    if (!this._sess.login) return;
    if (typeof window !== "undefined") {
      window.removeEventListener("pagehide", this._unload);
      window.removeEventListener("beforeunload", this._unload);
    }
    this._sess.closing = true; // the server's close after the logout is not a connection loss
    if (this._sess.online) {
      try {
        await this._request("logout", {}, 2000);
      } catch (err) {
        this._log("logout:", err.message);
      }
    }
    this._shutdown("uninit() was called");
  }

  /** The session is over (`why`): end the media and the call, fail waiting requests. */
  _shutdown(why) {
    this._sess.closing = true;
    this._mesh.end();
    this._resetCall();
    this._sess.close(why);
    this._emit(RinglineEvent.CONNECTION_CHANGED, { state: "offline", reason: why });
  }

  /** Send request `op`; resolves with its result or rejects with a RinglineError. */
  _request(op, args = {}, timeout = this._options.requestTimeout) {
    return this._sess.request(op, args, timeout);
  }

  _leaveOnUnload() {
    const c = this._call;
    if (!c.callId) return;
    // As the vendor's web kit does: a caller cancels, a ringing callee declines, a
    // connected member hangs up.
    const op = c.status === CallStatus.WAITING && c.role === CallRole.CALLED ? "reject" : "hangup";
    this._sess.sendNow(op, { call_id: c.callId });
    this._mesh.end();
  }

  // ------------------------------------------------------------------ pushes

  /** A push from the server (docs/protocol.md): update the call state, fire its event. */
  _onPush(name, a) {
    const c = this._call;
    const cid = a.call_id || "";
    const mine = cid && cid === c.callId;
    switch (name) {
      case "on_call_received":
        if (!c.callId) {
          this._setStatus(cid, CallStatus.WAITING, CallRole.CALLED, a.media_type);
          c.info = a.info;
        }
        this._emit(TUICallEvent.ON_CALL_RECEIVED, receivedPayload(a));
        return;
      case "on_call_begin": {
        const role = (a.info && a.info.role) || (mine ? c.role : CallRole.CALLED);
        this._setStatus(cid, CallStatus.ACCEPT, role, a.media_type);
        c.info = a.info;
        c.beganAt = Date.now();
        this._mesh.begin();
        this._emit(TUICallEvent.ON_CALL_BEGIN, beginPayload(a, role));
        return;
      }
      case "on_call_end":
      case "on_call_not_connected": {
        const payload = endPayload(a, c.role);
        if (mine) {
          this._mesh.end();
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
      case "on_call_cancelled":
        this._emit(TUICallEvent.ON_CALL_CANCELED, cancelledPayload(a, this._call.lastNotConnected || {}));
        return;
      case "on_call_media_type_changed":
        if (mine) {
          c.mediaType = a.new_call_media_type;
          this._mesh.switchMedia(a.new_call_media_type);
          this._emit(RinglineEvent.STATUS_CHANGED, { callID: cid, callStatus: c.status, callRole: c.role, callMediaType: c.mediaType });
        }
        this._emit(TUICallEvent.CALL_TYPE_CHANGED, { callID: cid, oldCallType: a.old_call_media_type, newCallType: a.new_call_media_type });
        return;
      case "on_user_join":
        if (mine) {
          c.joined.add(a.user_id);
          this._mesh.connect(a.user_id);
        }
        this._emit(TUICallEvent.USER_ENTER, { callID: cid, userID: a.user_id });
        return;
      case "on_user_leave":
        if (mine) {
          c.joined.delete(a.user_id);
          this._mesh.drop(a.user_id);
        }
        this._emit(TUICallEvent.USER_LEAVE, { callID: cid, userID: a.user_id });
        return;
      case "on_signal":
        if (mine && a.data && typeof a.data === "object") this._mesh.onSignal(a.from_user_id, a.data);
        return;
      case "on_sfu": // the call's media moves to its SFU room, or (sfu: null) back to the mesh (docs/sfu.md); no event
        if (mine && a.sfu) this._mesh.useSfu();
        else if (mine) this._mesh.leaveSfu([...c.joined]);
        return;
      case "on_sfu_feed":
        if (mine && typeof a.user_id === "string") this._mesh.sfuFeed(a.user_id);
        return;
      case "on_recording": // the call is recorded from now on, or no longer (docs/recording.md)
        this._emit(RinglineEvent.CALL_RECORDING_CHANGED, { callID: cid, isRecording: !!a.recording });
        return;
      default: {
        const member = memberEvent(name, a, this.userId);
        if (member) this._emit(member[0], member[1]);
        else this._log("ignoring push", name);
      }
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
    if (!this._sess.login) throw new RinglineError(ErrorCode.INIT_FAIL, "calls(): the engine is not initialised; call init() first");
    // The server decides whether this device may call now (already in a call: -1203;
    // calling the user whose call rings here answers it, docs/spec.md §5 row 8).
    this._mesh.acquire(media);
    let result;
    try {
      result = await this._request("calls", { user_ids: ids, media_type: media, ...(wire ? { params: wire } : {}) });
    } catch (err) {
      if (!this._call.callId) this._mesh.end();
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
    this._mesh.acquire(this._call.mediaType);
    try {
      await this._request("accept", { call_id: cid });
    } catch (err) {
      if (this._call.status !== CallStatus.ACCEPT) this._mesh.end();
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
    if (c.status === CallStatus.ACCEPT && !this._mesh.sfu) for (const u of c.joined) this._mesh.signal(u, { type: "bye" });
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
    if (typeof callId !== "string" || !callId || callId.length > MAX_CALL_ID) throw bad("join(): callId must be a call id string");
    if (this._call.callId && this._call.callId !== callId) {
      throw new RinglineError(ErrorCode.REQUEST_REFUSED, `join(): already in call ${this._call.callId}; hang up first`);
    }
    this._mesh.acquire(MediaType.AUDIO);
    try {
      await this._request("join", { call_id: callId });
    } catch (err) {
      if (this._call.status !== CallStatus.ACCEPT) this._mesh.end();
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
    await this._mesh.cameraOn();
    if (!this._mesh.videoTrack()) throw new RinglineError(ErrorCode.DEVICE_ERROR, "openCamera(): no camera could be opened");
    await this._request("open_camera", { call_id: cid });
  }

  /** Stop publishing video and release the camera. */
  async closeCamera() {
    const cid = this._requireCall("closeCamera", "close the camera once in a call");
    this._mesh.cameraOff();
    await this._request("close_camera", { call_id: cid });
  }

  /** Unmute: send the microphone again. */
  async openMicrophone() {
    const cid = this._requireCall("openMicrophone", "open the microphone once in a call");
    this._call.micOn = true;
    const t = this._mesh.audioTrack();
    if (t) t.enabled = true;
    await this._request("open_microphone", { call_id: cid });
  }

  /** Mute: send silence (the track stays, so unmuting needs no renegotiation). */
  async closeMicrophone() {
    const cid = this._requireCall("closeMicrophone", "close the microphone once in a call");
    this._call.micOn = false;
    const t = this._mesh.audioTrack();
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
    if (!this._sess.login || !this._sess.online) return;
    await this._request("enable_multi_device_ability", { enable });
    this._sess.login.multi_device = enable;
  }

  /**
   * This user's call history, newest first.
   * @param {{resultType?: number, limit?: number, begin?: number, end?: number}} [filter]
   */
  async queryRecentCalls(filter = {}) {
    const args = { result_type: filter.resultType ?? 0, limit: filter.limit ?? 50 };
    if (filter.begin !== undefined) args.begin = filter.begin;
    if (filter.end !== undefined) args.end = filter.end;
    if (!Number.isInteger(args.limit) || args.limit < 1 || args.limit > MAX_RECENT) throw bad(`queryRecentCalls(): limit must be 1..${MAX_RECENT}`);
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
    if (this._sess.login) this._sess.login.user_sig = userSig;
  }

  _requireCall(op, hint) {
    if (!this._sess.login) throw new RinglineError(ErrorCode.INIT_FAIL, `${op}(): the engine is not initialised; call init() first`);
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
      this._mesh.end();
      this._resetCall();
      this._setStatus("", CallStatus.NONE, CallRole.NONE, MediaType.UNKNOWN);
    }
  }
}

function randomId(prefix) {
  const a = new Uint8Array(8);
  crypto.getRandomValues(a);
  return prefix + Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
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
    if (!Number.isInteger(p.timeout) || p.timeout < 0 || p.timeout > MAX_RING_TIMEOUT) {
      throw bad(`params.timeout must be 0..${MAX_RING_TIMEOUT} seconds (0 = ${DEFAULT_RING_TIMEOUT}), got ${p.timeout}`);
    }
    out.timeout = p.timeout;
  }
  if (p.userData !== undefined) {
    if (typeof p.userData !== "string") throw bad("params.userData must be a string");
    if (new TextEncoder().encode(p.userData).length > MAX_USER_DATA_BYTES) {
      throw bad(`params.userData is over ${MAX_USER_DATA_BYTES} bytes; store large data elsewhere and send a key`);
    }
    out.user_data = p.userData;
  }
  const group = p.chatGroupId ?? p.chatGroupID;
  if (group !== undefined) out.chat_group_id = String(group);
  if (p.isEphemeralCall !== undefined) out.is_ephemeral_call = !!p.isEphemeralCall;
  if (p.record !== undefined) out.record = !!p.record;
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

