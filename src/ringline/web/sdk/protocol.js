// Ringline browser engine: the wire-protocol facts and the call contract's enums
// (docs/protocol.md, docs/spec.md §2). Every value here is also written in Python;
// tests/server/test_web_protocol.py parses this file and fails when the two drift.
// Entry point for users: ringline.js (which re-exports the enums).

/** The protocol version this engine speaks (`v` of login and resume). */
export const PROTOCOL_VERSION = 1;
/** A user id: 1-32 characters of [A-Za-z0-9_-]. */
export const USER_ID = /^[A-Za-z0-9_-]{1,32}$/;
/** A device id: 1-64 characters of [A-Za-z0-9_.:-]. */
export const DEVICE_ID = /^[A-Za-z0-9_.:-]{1,64}$/;
/** Users one call can invite at once (a call has at most MAX_CALLEES + 1 members). */
export const MAX_CALLEES = 8;
/** The longest call id the engine passes on (join). */
export const MAX_CALL_ID = 128;
/** params.userData, in UTF-8 bytes. */
export const MAX_USER_DATA_BYTES = 1000;
/** params.timeout, in seconds (0 = the server's default, 30). */
export const MAX_RING_TIMEOUT = 600;
/** queryRecentCalls(): the largest `limit`. */
export const MAX_RECENT = 200;
/** Pushes after which this device is no longer in the call. */
export const TERMINAL_EVENTS = Object.freeze(["on_call_end", "on_call_not_connected"]);
/** Close codes after which logging in again would not help (docs/protocol.md "Closing"). */
export const FATAL_CLOSES = Object.freeze({
  4001: "kicked offline",
  4002: "user sig expired",
  4003: "login failed",
  4009: "too many unacknowledged events",
});

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

/** A PARAM_INVALID error: the caller passed something the engine cannot use. */
export function bad(message) {
  return new RinglineError(ErrorCode.PARAM_INVALID, message);
}
