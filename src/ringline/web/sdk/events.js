// Ringline browser engine: the event names (the vendor's web names, Ringline's own, the
// vendor's uni-app names), delivery to handlers, and the shaping of server pushes into
// event payloads (docs/spec.md §8, docs/web.md). Entry point for users: ringline.js.

import { CallEndReason, CallRole, bad } from "./protocol.js";

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
  /** {callID, isRecording}: the call is recorded from now on, or no longer (docs/recording.md). */
  CALL_RECORDING_CHANGED: "onCallRecordingChanged",
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
for (const [name, entry] of Object.entries(VENDOR_EVENTS)) {
  const row = /** @type {{event: string, payload?: (p: any) => object}} */ (entry);
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

/** Handlers by event name: on/off and their vendor spellings; the engine extends it. */
export class Emitter {
  constructor() {
    /** @type {Map<string, Function[]>} */
    this._handlers = new Map();
  }

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
}

/** onCallCanceled's `reason`, from the CallEndReason of the onCallNotConnected before it. */
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

/** `{roomID, strRoomID}` of a push's `info`. */
export function roomOf(info) {
  const r = (info && info.room_id) || {};
  return { roomID: r.int_room_id || 0, strRoomID: r.str_room_id || "" };
}

/** The `info` object of the payloads, from a push's wire `info`. */
export function infoOf(info) {
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

/** A call record of queryRecentCalls() from its wire form. */
export function recordOf(r) {
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

/** onCallReceived's payload from the on_call_received push `a`. */
export function receivedPayload(a) {
  const info = infoOf(a.info);
  return {
    callID: a.call_id || "", ...roomOf(a.info),
    callerId: a.caller_id, calleeIdList: a.callee_id_list || [], userIDList: a.callee_id_list || [],
    groupID: info.chatGroupId, callMediaType: a.media_type, callRole: CallRole.CALLED,
    userData: info.userData, inviterId: info.inviterId, inviterNickname: info.inviterNickname,
    inviterAvatar: info.inviterAvatar, ringTimeLeft: info.ringTimeLeft, info,
  };
}

/** onCallBegin's payload from the on_call_begin push `a`; `role` is this device's. */
export function beginPayload(a, role) {
  return { callID: a.call_id || "", ...roomOf(a.info), callRole: role, callMediaType: a.media_type, info: infoOf(a.info) };
}

/** onCallNotConnected's payload (onCallEnd's without the times) from the push `a`;
 * `role` is this device's role in the call when the push does not say. */
export function endPayload(a, role) {
  return {
    callID: a.call_id || "", ...roomOf(a.info), callMediaType: a.media_type, callRole: (a.info && a.info.role) || role,
    reason: a.reason, userID: a.user_id, info: infoOf(a.info),
  };
}

/** onCallCanceled's payload from the push `a` and the onCallNotConnected payload before it. */
export function cancelledPayload(a, last) {
  return {
    callID: a.call_id || "", userID: a.user_id, reason: CANCEL_REASON[last.reason] || "normal",
    callMediaType: last.callMediaType, callRole: last.callRole, roomID: last.roomID, strRoomID: last.strRoomID,
  };
}

/** Pushes about another member that change nothing on this device: their event and
 * payload (`me`: this device's user id), or null for any other push. */
export function memberEvent(name, a, me) {
  const base = { callID: a.call_id || "", userID: a.user_id };
  switch (name) {
    case "on_user_inviting":
      // Ringline adds what the caller's screen shows: the invitee's profile and whether
      // any of its devices is logged in (false: it rings only if one logs in in time).
      return [TUICallEvent.ON_USER_INVITING, {
        ...base, nickname: a.nickname || "", avatar: a.avatar || "", isOnline: a.online !== false,
      }];
    case "on_user_reject":
      return [TUICallEvent.REJECT, base];
    case "on_user_no_response":
      return [TUICallEvent.NO_RESP, { ...base, sponsor: me, userIDList: [a.user_id] }];
    case "on_user_line_busy":
      return [TUICallEvent.LINE_BUSY, base];
    case "on_user_video_available":
      return [TUICallEvent.USER_VIDEO_AVAILABLE, { ...base, isVideoAvailable: !!a.is_video_available }];
    case "on_user_audio_available":
      return [TUICallEvent.USER_AUDIO_AVAILABLE, { ...base, isAudioAvailable: !!a.is_audio_available }];
    case "on_kicked_offline":
      return [TUICallEvent.KICKED_OUT, {}];
    case "on_user_sig_expired":
      return [TUICallEvent.USER_SIG_EXPIRED, {}];
    default:
      return null;
  }
}
