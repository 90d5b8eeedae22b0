// Ringline browser engine: calls with the vendor's web event names (docs/spec.md §8) and
// real WebRTC audio/video between the members of a call (docs/media.md).
//
// Plain ES modules, no build step, no dependencies. Served by every Ringline server at
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
//
// This file is the entry point users import; the engine lives in the modules next to
// it (docs/web.md "Inside the engine"): engine.js (CallEngine, the call state),
// session.js (the WebSocket, login, resume, requests), peer.js (the media mesh,
// volumes, network quality), events.js (event names, vendor names, payloads) and
// protocol.js (the protocol's constants and enums, checked against the server's).

export {
  CallEndReason,
  CallResultType,
  CallRole,
  CallScene,
  CallStatus,
  ErrorCode,
  MediaType,
  NetworkQuality,
  RinglineError,
  TUICallType,
} from "./protocol.js";
export { RinglineEvent, TUICallEvent, VENDOR_EVENTS } from "./events.js";
export { gradeQuality, volumeOf } from "./peer.js";
export { CallEngine } from "./engine.js";
export { CallEngine as default } from "./engine.js";
