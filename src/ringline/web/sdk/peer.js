// Ringline browser engine: the media mesh (docs/media.md). The local microphone and
// camera, one RTCPeerConnection per other member (the lower user id offers, the other
// answers; ICE candidates are trickled through the server's `signal` op), the audio
// meters, and the statistics that give the volumes (~300 ms) and the network quality
// per user (2 s). In a call with an SFU room (on_sfu, docs/sfu.md) the mesh gives way
// to one publishing connection and one receiving connection (SfuFeed) per member.
// The call state it follows is the engine's (engine.js). Entry point
// for users: ringline.js.

import { CallStatus, ErrorCode, MediaType, NetworkQuality, bad } from "./protocol.js";
import { RinglineEvent, TUICallEvent } from "./events.js";

const QUALITY_INTERVAL_MS = 2000;
const VOLUME_INTERVAL_MS = 300;
const DOWN_AFTER_MS = 3000;

/**
 * NetworkQuality from round-trip time (ms), packet loss (% in the last interval) and
 * jitter (ms): the worst of the three grades (docs/media.md §5). A metric that is
 * `null`/`undefined` (not measured yet) does not limit the grade.
 * @param {{rtt?: number|null, loss?: number|null, jitter?: number|null}} m
 * @returns {import("./ringline.d.ts").NetworkQualityValue}
 */
export function gradeQuality({ rtt = null, loss = null, jitter = null }) {
  const grade = (v, limits) => {
    if (v === null || v === undefined || Number.isNaN(v)) return 1;
    for (let i = 0; i < limits.length; i++) if (v < limits[i]) return i + 1;
    return 5;
  };
  const worst = Math.max(
    grade(rtt, [100, 200, 300, 500]),
    grade(loss, [1, 3, 6, 10]),
    grade(jitter, [20, 40, 60, 100]),
  );
  return /** @type {1 | 2 | 3 | 4 | 5} */ (worst);
}

/**
 * The browser's getUserMedia; where there is none, a rejection that says why. Browsers
 * offer the camera and microphone only to secure pages (https://, or http://localhost
 * and 127.0.0.1): elsewhere navigator.mediaDevices is undefined.
 * @param {MediaStreamConstraints} constraints
 * @returns {Promise<MediaStream>}
 */
function getUserMedia(constraints) {
  const devices = typeof navigator !== "undefined" ? navigator.mediaDevices : undefined;
  if (devices && devices.getUserMedia) return devices.getUserMedia(constraints);
  const why = typeof isSecureContext !== "undefined" && !isSecureContext
    ? `this page (${location.origin}) is not a secure context, and browsers offer the camera and microphone only to https:// pages and http://localhost: serve the page over https`
    : "this browser offers no camera or microphone (navigator.mediaDevices is missing)";
  return Promise.reject(new Error(why));
}

/** @param {number} level linear 0..1 (clipped) @returns {number} 0..100 */
export function volumeOf(level) {
  return Math.round(100 * Math.min(1, Math.max(0, level || 0)));
}

/** The element `view` (an element, or the id of one). */
export function elementOf(view) {
  if (typeof view === "string") {
    const el = document.getElementById(view);
    if (!el) throw bad(`no element with id ${JSON.stringify(view)}`);
    return el;
  }
  return view;
}

/** Play `stream` in the media element `view` (an element or an element id). */
export function attach(view, stream, { muted }) {
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

export /** One RTCPeerConnection with one remote user (docs/media.md §2-§3). */
class Peer {
  /** @param {Mesh} mesh @param {string} userId */
  constructor(mesh, userId) {
    this.mesh = mesh;
    const engine = mesh.engine;
    this.userId = userId;
    this.offerer = engine.userId < userId;
    this.pc = new RTCPeerConnection({
      iceServers: engine._sess.iceServers,
      iceTransportPolicy: engine._sess.iceTransportPolicy,
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
      this.mesh.signal(this.userId, c ? { type: "candidate", ...c.toJSON() } : { type: "candidate", candidate: null });
    };
    pc.ontrack = (e) => this._onTrack(e.track);
    pc.onnegotiationneeded = () => {
      // Fires (in the stable state) after a transceiver's direction changed or ICE
      // restarted. Only the offerer offers; the answerer asks it to (docs/media.md §2).
      if (this.closed) return;
      if (this.offerer) this.negotiate(false);
      else if (pc.remoteDescription) this.mesh.signal(this.userId, { type: "renegotiate" });
    };
    pc.oniceconnectionstatechange = () => {
      const s = pc.iceConnectionState;
      if (s === "connected" || s === "completed") this.everConnected = true;
      if (s === "failed" && this.offerer && !this.closed) {
        this.mesh.engine._log("ICE failed with", this.userId, "- restarting ICE");
        pc.restartIce();
      }
    };
  }

  /** Run `fn` after everything queued for this peer (signals are handled in order). */
  run(fn) {
    this.chain = this.chain.then(() => (this.closed ? undefined : fn())).catch((err) => {
      if (!this.closed) this.mesh.engine._fail(ErrorCode.SIGNALING_SEND_FAIL, `media with ${this.userId}: ${err && err.message ? err.message : err}`);
    });
    return this.chain;
  }

  /** Offerer: add the audio and video transceivers (in that order), then offer. */
  start() {
    this.offering = true; // negotiationneeded during setup is covered by the first offer
    return this.run(async () => {
      try {
        await this.mesh.ready();
        const m = this.mesh;
        const audio = this.pc.addTransceiver("audio", { direction: "sendrecv", streams: [m.localStream] });
        const video = this.pc.addTransceiver("video", { direction: m.videoDirection(), streams: [m.localStream] });
        await audio.sender.replaceTrack(m.audioTrack());
        await video.sender.replaceTrack(m.videoTrack());
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
      await this.mesh.signal(this.userId, { type: "offer", sdp: this.pc.localDescription.sdp });
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
            this.mesh.engine._log("ignoring an offer from", this.userId, "(we are the offerer)");
            return;
          }
          await this.mesh.ready();
          await pc.setRemoteDescription({ type: "offer", sdp: data.sdp });
          await this.mesh.applyLocal(this);
          const answer = await pc.createAnswer();
          await pc.setLocalDescription(answer);
          await this.mesh.signal(this.userId, { type: "answer", sdp: pc.localDescription.sdp });
          await this._flushCandidates();
          return;
        }
        case "answer": {
          if (pc.signalingState !== "have-local-offer") {
            this.mesh.engine._log("ignoring an answer from", this.userId, "in state", pc.signalingState);
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
              this.mesh.engine._log("restart asked by", this.userId, "- sending the unanswered offer again");
              await this.mesh.signal(this.userId, { type: "offer", sdp: pc.localDescription.sdp });
              return;
            }
            this.mesh.engine._log("restart asked by", this.userId, "- restarting ICE");
            pc.restartIce();
          }
          this.negotiate();
          return;
        case "bye":
          this.mesh.drop(this.userId);
          return;
        default:
          this.mesh.engine._log("ignoring signal of type", data.type, "from", this.userId);
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
        this.mesh.engine._log("candidate from", this.userId, "refused:", err && err.message);
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
      if (p && p.catch) p.catch((err) => this.mesh.engine._log("remote audio of", this.userId, "cannot play yet:", err && err.message));
      this.analyser = this.mesh.meter(track);
    }
    this.mesh.engine._emit(RinglineEvent.REMOTE_STREAM, { userID: this.userId, stream: this.remoteStream });
    for (const view of this.mesh.remoteViews.get(this.userId) || []) attach(view, this.remoteStream, { muted: true });
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


/** Resolves when `pc` has gathered its ICE candidates (the SFU's SDPs are complete:
 * no trickle), or after `ms` with what it has. */
function gathered(pc, ms = 5000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    }, ms);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

/** What one other member publishes in the call's SFU room (docs/sfu.md), received on a
 * connection of its own: Janus offers (through the server's `subscribe`), this side
 * answers (`start`); nothing is sent on it. It stands where the mesh connection to that
 * member would (`mesh.peers`), so remote streams, views, volume and quality are the same. */
export class SfuFeed extends Peer {
  /** @param {Mesh} mesh @param {string} userId */
  constructor(mesh, userId) {
    super(mesh, userId);
    this.offerer = false;
    const pc = this.pc;
    pc.onicecandidate = null; // complete SDPs, no trickle
    pc.onnegotiationneeded = null;
    pc.oniceconnectionstatechange = () => {
      const st = pc.iceConnectionState;
      if (st === "connected" || st === "completed") this.everConnected = true;
      if (st === "failed") this.mesh.engine._log("the SFU connection for", this.userId, "failed");
    };
  }

  /** Subscribe to the member's feed, answer Janus's offer, start it. */
  start() {
    return this.run(async () => {
      await this.mesh.ready();
      const got = await this.mesh.sfuRequest({ type: "subscribe", feed: this.userId });
      if (this.closed) return;
      await this.pc.setRemoteDescription({ type: "offer", sdp: got.sdp });
      await this.pc.setLocalDescription(await this.pc.createAnswer());
      await gathered(this.pc);
      if (this.closed) return;
      await this.mesh.sfuRequest({ type: "start", feed: this.userId, sdp: this.pc.localDescription.sdp });
    });
  }

  onSignal() {
    return this.chain; // no mesh signalling on this connection
  }

  negotiate() {}

  _onTrack(track) {
    // A member who joins an audio call that started as video still gets a video stream
    // from Janus (it carries nothing): keep it out of the remote stream until video.
    if (track.kind === "video" && this.mesh.engine._call.mediaType !== MediaType.VIDEO) return;
    super._onTrack(track);
  }

  /** The call switched media type: show this member's video again (`on`) or take it
   * out of the remote stream (audio: the SFU stops relaying it). */
  showVideo(on) {
    let changed = false;
    for (const r of this.pc.getReceivers()) {
      const t = r.track;
      if (!t || t.kind !== "video") continue;
      const has = this.remoteStream.getTracks().includes(t);
      if (on && !has) this.remoteStream.addTrack(t);
      else if (!on && has) this.remoteStream.removeTrack(t);
      else continue;
      changed = true;
    }
    if (!changed) return;
    this.mesh.engine._emit(RinglineEvent.REMOTE_STREAM, { userID: this.userId, stream: this.remoteStream });
    for (const view of this.mesh.remoteViews.get(this.userId) || []) attach(view, this.remoteStream, { muted: true });
  }
}

/** This device's media, sent once to the call's SFU room (docs/sfu.md). */
class SfuPublisher {
  /** @param {Mesh} mesh */
  constructor(mesh) {
    this.mesh = mesh;
    const engine = mesh.engine;
    this.pc = new RTCPeerConnection({
      iceServers: engine._sess.iceServers,
      iceTransportPolicy: engine._sess.iceTransportPolicy,
    });
    this.closed = false;
    /** Janus answered the offer */
    this.published = false;
    /** what the SFU was last told about this device's video (`configure`) */
    this.relayingVideo = true;
    this.pc.onconnectionstatechange = () => engine._log("SFU publisher", this.pc.connectionState);
  }

  /** Tell the SFU to relay this device's video again (`on`) or to stop relaying it (a
   * switch to audio; the camera track is already off the sender). Nothing to say before
   * the publish answer (publish() says it then), nor when the offer had no video (a
   * call that started as audio: video is not added to the room later). */
  async relayVideo(on) {
    if (this.closed || !this.published || !this.videoSender() || this.relayingVideo === on) return;
    this.relayingVideo = on;
    try {
      await this.mesh.sfuRequest({ type: "configure", video: on });
    } catch (err) {
      if (!this.closed) this.mesh.engine._fail(ErrorCode.SIGNALING_SEND_FAIL, `the SFU cannot ${on ? "relay" : "stop"} this device's video: ${err && err.message ? err.message : err}`);
    }
  }

  /** Offer (audio, and video in a video call, send only), get Janus's answer through
   * the server; resolves with the members already publishing. */
  async publish() {
    const m = this.mesh;
    await m.ready();
    if (this.closed) return [];
    const audio = this.pc.addTransceiver("audio", { direction: "sendonly", streams: [m.localStream] });
    await audio.sender.replaceTrack(m.audioTrack());
    if (m.engine._call.mediaType === MediaType.VIDEO) {
      const video = this.pc.addTransceiver("video", { direction: "sendonly", streams: [m.localStream] });
      await video.sender.replaceTrack(m.videoTrack());
    }
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await gathered(this.pc);
    if (this.closed) return [];
    const got = await m.sfuRequest({ type: "publish", sdp: this.pc.localDescription.sdp });
    if (this.closed) return [];
    await this.pc.setRemoteDescription({ type: "answer", sdp: got.sdp });
    this.published = true;
    if (m.engine._call.mediaType !== MediaType.VIDEO) await this.relayVideo(false); // switched meanwhile
    return Array.isArray(got.feeds) ? got.feeds.filter((u) => typeof u === "string") : [];
  }

  videoSender() {
    const t = this.pc.getTransceivers().find((x) => x.receiver.track.kind === "video");
    return t ? t.sender : null;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    try {
      this.pc.close();
    } catch {
      // already closed
    }
  }
}

/**
 * The media of one engine's current call: the local stream, one Peer per connected
 * member, the views, the meters and the polls. `engine` owns the call state
 * (`_call`), the requests (`_request`) and the events (`_emit`, `_fail`, `_log`).
 */
export class Mesh {
  /** @param {any} engine the CallEngine */
  constructor(engine) {
    this.engine = engine;
    /** @type {Map<string, Peer>} */
    this.peers = new Map();
    this.localStream = new MediaStream();
    this.localMeter = null;
    /** @type {Promise<void> | null} the local media being acquired */
    this.media = null;
    /** @type {Map<string, HTMLMediaElement[]>} */
    this.remoteViews = new Map();
    /** @type {HTMLMediaElement[]} */
    this.localViews = [];
    /** @type {AudioContext | null} */
    this.audioCtx = null;
    this.timers = [];
    /** @type {SfuPublisher | null} set once the call's media goes through its SFU room */
    this.publisher = null;
    /** true from on_sfu to the end of the call: no mesh connections */
    this.sfu = false;
  }

  /** Show the local camera in a <video> element (or element id); muted. */
  startLocalView(view) {
    const el = elementOf(view);
    if (!this.localViews.includes(el)) this.localViews.push(el);
    attach(el, this.localStream, { muted: true });
  }

  /** Show `userId`'s video in a <video> element (or element id), also before it arrives. */
  startRemoteView(userId, view) {
    const el = elementOf(view);
    const list = this.remoteViews.get(userId) || [];
    if (!list.includes(el)) list.push(el);
    this.remoteViews.set(userId, list);
    const p = this.peers.get(userId);
    if (p) attach(el, p.remoteStream, { muted: true });
  }

  /** Stop showing `userId`'s video in any element. */
  stopRemoteView(userId) {
    for (const el of this.remoteViews.get(userId) || []) el.srcObject = null;
    this.remoteViews.delete(userId);
  }

  audioTrack() {
    return this.localStream.getAudioTracks()[0] || null;
  }

  videoTrack() {
    const c = this.engine._call;
    if (c.mediaType !== MediaType.VIDEO || !c.camOn) return null;
    return this.localStream.getVideoTracks()[0] || null;
  }

  videoDirection() {
    return this.engine._call.mediaType === MediaType.VIDEO ? "sendrecv" : "inactive";
  }

  /** Start getting the microphone (and the camera for video); never throws. */
  acquire(media) {
    if (this.media) return this.media;
    this.media = (async () => {
      const wantVideo = media === MediaType.VIDEO && this.engine._options.video !== false;
      try {
        if (this.engine._options.audio !== false && !this.audioTrack()) {
          const s = await getUserMedia({ audio: this.engine._options.audio });
          for (const t of s.getAudioTracks()) this.addLocal(t);
        }
      } catch (err) {
        this.engine._fail(ErrorCode.DEVICE_ERROR, `the microphone could not be opened: ${err.message || err.name}`);
      }
      if (wantVideo) {
        this.engine._call.camOn = true;
        await this.getCamera();
      }
      this.engine._emit(RinglineEvent.LOCAL_STREAM, { stream: this.localStream });
    })();
    return this.media;
  }

  async getCamera() {
    if (this.localStream.getVideoTracks().length) return;
    if (this.engine._options.video === false) {
      this.engine._call.camOn = false; // this engine was made without a camera
      return;
    }
    try {
      const s = await getUserMedia({ video: this.engine._options.video });
      for (const t of s.getVideoTracks()) this.addLocal(t);
    } catch (err) {
      this.engine._call.camOn = false;
      this.engine._fail(ErrorCode.DEVICE_ERROR, `the camera could not be opened: ${err.message || err.name}`);
    }
  }

  addLocal(track) {
    this.localStream.addTrack(track);
    if (track.kind === "audio") {
      track.enabled = this.engine._call.micOn;
      if (this.localMeter) this.localMeter.disconnect();
      this.localMeter = this.meter(track);
    }
    // A device that stops (unplugged, revoked) counts as closed: tell the others.
    track.addEventListener("ended", () => {
      const cid = this.engine._call.callId;
      if (!cid || !this.localStream.getTracks().includes(track)) return;
      this.localStream.removeTrack(track);
      if (track.kind === "video") {
        this.engine._call.camOn = false;
        this.replaceVideo(null);
        this.engine._request("close_camera", { call_id: cid }).catch(() => {});
      } else {
        this.engine._request("close_microphone", { call_id: cid }).catch(() => {});
      }
    });
    for (const el of this.localViews) attach(el, this.localStream, { muted: true });
  }

  ready() {
    return this.media || this.acquire(this.engine._call.mediaType);
  }

  /** on_call_begin: media for the call, the meters, and the real device state. */
  async begin() {
    const cid = this.engine._call.callId;
    await this.acquire(this.engine._call.mediaType);
    if (this.engine._call.callId !== cid) return;
    if (!this.timers.length) {
      this.timers.push(setInterval(() => this.pollQuality(), QUALITY_INTERVAL_MS));
      this.timers.push(setInterval(() => this.pollVolume(), VOLUME_INTERVAL_MS));
    }
    // The server assumes microphone on, camera on in video calls: correct it from
    // the real tracks.
    if (!this.audioTrack()) this.engine._request("close_microphone", { call_id: cid }).catch(() => {});
    else if (!this.engine._call.micOn) this.engine._request("close_microphone", { call_id: cid }).catch(() => {});
    if (this.engine._call.mediaType === MediaType.VIDEO && !this.videoTrack()) {
      this.engine._request("close_camera", { call_id: cid }).catch(() => {});
    }
  }

  end() {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    for (const [, p] of this.peers) p.close();
    this.peers = new Map();
    if (this.publisher) this.publisher.close();
    this.publisher = null;
    this.sfu = false;
    for (const t of this.localStream.getTracks()) {
      t.stop();
      this.localStream.removeTrack(t);
    }
    if (this.localMeter) this.localMeter.disconnect();
    this.localMeter = null;
    this.media = null;
    for (const [userId] of this.remoteViews) this.stopRemoteView(userId);
    if (this.audioCtx) {
      this.audioCtx.close().catch(() => {});
      this.audioCtx = null;
    }
  }

  /** Answerer: put our tracks on the transceivers the offer created (audio, video). */
  async applyLocal(peer) {
    const ts = peer.pc.getTransceivers();
    const audio = ts.find((t) => t.receiver.track.kind === "audio");
    const video = ts.find((t) => t.receiver.track.kind === "video");
    if (audio) {
      audio.direction = "sendrecv";
      await audio.sender.replaceTrack(this.audioTrack());
      audio.sender.setStreams(this.localStream);
    }
    if (video) {
      video.direction = this.videoDirection();
      await video.sender.replaceTrack(this.videoTrack());
      video.sender.setStreams(this.localStream);
    }
  }

  async replaceVideo(track) {
    for (const [, p] of this.peers) {
      const t = p.pc.getTransceivers().find((x) => x.receiver.track.kind === "video");
      if (t && !p.closed && !(p instanceof SfuFeed)) await t.sender.replaceTrack(track).catch(() => {});
    }
    const sender = this.publisher && this.publisher.videoSender();
    if (sender) await sender.replaceTrack(track).catch(() => {});
  }

  /** Open the camera (if needed) and send it on every connection. */
  async cameraOn() {
    this.engine._call.camOn = true;
    await this.getCamera();
    await this.replaceVideo(this.videoTrack());
    this.engine._emit(RinglineEvent.LOCAL_STREAM, { stream: this.localStream });
  }

  cameraOff() {
    this.engine._call.camOn = false;
    this.replaceVideo(null);
    for (const t of this.localStream.getVideoTracks()) {
      t.stop();
      this.localStream.removeTrack(t);
    }
    this.engine._emit(RinglineEvent.LOCAL_STREAM, { stream: this.localStream });
  }

  /** The call switched media type: camera and video direction on every connection. */
  async switchMedia(media) {
    const cid = this.engine._call.callId;
    if (media === MediaType.VIDEO) {
      await this.cameraOn();
      if (this.engine._call.callId === cid && !this.videoTrack()) this.engine._request("close_camera", { call_id: cid }).catch(() => {});
    } else {
      this.cameraOff();
    }
    if (this.sfu) {
      // Through the SFU (docs/sfu.md): no renegotiation. The camera is on or off the
      // publisher's sender (above); Janus relays this device's video or stops; the
      // others' video shows or leaves their remote streams.
      const video = media === MediaType.VIDEO;
      if (this.publisher) await this.publisher.relayVideo(video);
      for (const [, p] of this.peers) if (p instanceof SfuFeed) p.showVideo(video);
      return;
    }
    for (const [, p] of this.peers) {
      const t = p.pc.getTransceivers().find((x) => x.receiver.track.kind === "video");
      if (!t || p.closed || p instanceof SfuFeed) continue;
      t.direction = this.videoDirection();
      await t.sender.replaceTrack(this.videoTrack()).catch(() => {});
      // The direction change fires negotiationneeded: the offerer offers, the
      // answerer sends renegotiate. Nudge the offerer in case the browser coalesced it.
      if (p.offerer) p.negotiate(false);
    }
  }

  connect(userId) {
    if (this.sfu) return this.peers.get(userId); // the SFU room carries the media
    if (this.peers.has(userId) || this.engine._call.status !== CallStatus.ACCEPT) return this.peers.get(userId);
    const p = new Peer(this, userId);
    this.peers.set(userId, p);
    for (const el of this.remoteViews.get(userId) || []) attach(el, p.remoteStream, { muted: true });
    if (p.offerer) p.start();
    return p;
  }

  drop(userId) {
    const p = this.peers.get(userId);
    if (!p) return;
    this.peers.delete(userId);
    p.close();
    if (p instanceof SfuFeed && this.sfu) {
      // The server detaches it too when the member leaves: a refusal is no error.
      this.sfuRequest({ type: "unsubscribe", feed: userId }).catch((err) => this.engine._log("unsubscribe", userId, err && err.message));
    }
  }

  // ------------------------------------------------------------------ through an SFU

  /** The `sfu` request for the current call (docs/sfu.md); resolves with its result. */
  sfuRequest(data) {
    const cid = this.engine._call.callId;
    if (!cid) return Promise.reject(new Error("no current call"));
    return this.engine._request("sfu", { call_id: cid, data });
  }

  /** on_sfu: the call has an SFU room for this device. Close the mesh connections,
   * publish once through the room and receive every member who publishes there.
   * Again (the room was made again): start over in it. */
  useSfu() {
    this.sfu = true;
    for (const [, p] of this.peers) p.close();
    this.peers = new Map();
    if (this.publisher) this.publisher.close();
    const pub = (this.publisher = new SfuPublisher(this));
    pub.publish().then(
      (feeds) => {
        if (pub.closed) return;
        this.engine._log("media through the SFU; publishing:", feeds);
        for (const u of feeds) this.sfuFeed(u);
      },
      (err) => {
        if (!pub.closed) this.engine._fail(ErrorCode.SIGNALING_SEND_FAIL, `cannot publish through the SFU: ${err && err.message ? err.message : err}`);
      },
    );
  }

  /** on_sfu with no room: the call went back to the mesh (a device that does not follow
   * SFU rooms joined). Close the SFU connections and connect to each of `members` (the
   * members connected now) again. */
  leaveSfu(members) {
    if (!this.sfu) return;
    this.sfu = false;
    for (const [, p] of this.peers) p.close();
    this.peers = new Map();
    if (this.publisher) this.publisher.close();
    this.publisher = null;
    for (const u of members) {
      const p = this.connect(u);
      // An offer that came while this side was still in the room was ignored: ask for
      // one (an offerer whose offer is still unanswered sends it again).
      if (p && !p.offerer) this.signal(u, { type: "renegotiate", restart: true });
    }
  }

  /** on_sfu_feed (or a publish answer's feeds): `userId`'s media reached the SFU. */
  sfuFeed(userId) {
    if (!this.sfu || userId === this.engine.userId || this.peers.has(userId)) return;
    const p = new SfuFeed(this, userId);
    this.peers.set(userId, p);
    for (const el of this.remoteViews.get(userId) || []) attach(el, p.remoteStream, { muted: true });
    p.start();
  }

  onSignal(from, data) {
    if (this.sfu) return; // mesh signals are ignored once the room is used
    let p = this.peers.get(from);
    if (!p) {
      // The offer may come before we processed on_user_join of its sender.
      if (data.type !== "offer") return;
      p = this.connect(from);
      if (!p) return;
    }
    p.onSignal(data);
  }

  signal(to, data) {
    const cid = this.engine._call.callId;
    if (!cid || this.engine._call.status !== CallStatus.ACCEPT) return Promise.resolve();
    return this.engine._request("signal", { call_id: cid, to_user_id: to, data }).catch((err) => {
      // A peer that just left cannot be signalled any more: not an error.
      if (err.code !== ErrorCode.REQUEST_REFUSED && err.code !== ErrorCode.CALL_NOT_FOUND) {
        this.engine._fail(err.code, `signalling ${to} failed: ${err.msg || err.message}`);
      }
    });
  }

  // ------------------------------------------------------------------ meters

  /** An AnalyserNode on `track` (null if Web Audio is unavailable). */
  meter(track) {
    try {
      if (!this.audioCtx) this.audioCtx = new AudioContext();
      const ctx = this.audioCtx;
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
      this.engine._log("no audio meter:", err && err.message);
      return null;
    }
  }

  async pollVolume() {
    const c = this.engine._call;
    if (c.status !== CallStatus.ACCEPT) return;
    const volumeMap = [];
    const local = this.audioTrack();
    let level = 0;
    if (local && c.micOn) {
      const l = this.localMeter && this.localMeter.level();
      level = l ?? (await this.statsLevel(null));
    }
    volumeMap.push({ userId: this.engine.userId, audioVolume: volumeOf(level) });
    for (const [userId, p] of this.peers) {
      let l = p.analyser && p.analyser.level();
      if (l === null || l === undefined) l = await this.statsLevel(p);
      volumeMap.push({ userId, audioVolume: volumeOf(l) });
    }
    if (this.engine._call.callId !== c.callId) return;
    this.engine._emit(TUICallEvent.USER_VOICE_VOLUME, { callID: c.callId, volumeMap });
  }

  /** Fallback level from statistics: inbound audioLevel, or the local media-source. */
  async statsLevel(peer) {
    const pcs = peer ? [peer.pc] : this.publisher ? [this.publisher.pc] : [...this.peers.values()].map((p) => p.pc).slice(0, 1);
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

  async pollQuality() {
    const c = this.engine._call;
    if (c.status !== CallStatus.ACCEPT || !this.peers.size) return;
    const list = [];
    /** @type {number} */
    let worst = NetworkQuality.UNKNOWN;
    for (const [userId, p] of this.peers) {
      const q = await this.qualityOf(p);
      list.push({ userId, quality: q });
      if (q !== NetworkQuality.UNKNOWN) worst = Math.max(worst, q);
    }
    if (this.engine._call.callId !== c.callId) return;
    list.unshift({ userId: this.engine.userId, quality: worst });
    this.engine._emit(TUICallEvent.ON_USER_NETWORK_QUALITY_CHANGED, { callID: c.callId, networkQualityList: list });
  }

  /** docs/media.md §5: rtt, loss over the last interval, jitter -> NetworkQuality. */
  async qualityOf(p) {
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
