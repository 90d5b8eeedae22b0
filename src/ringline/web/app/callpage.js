// The Ringline call page: sign in, call one or several users, answer, talk with video
// tiles, volume bars and network-quality marks, a live event log and recent calls.
// Built only on the public engine API (/sdk/ringline.js); docs/web.md.
//
//   import { mountCallPage } from "/app/callpage.js";
//   const page = mountCallPage(document.getElementById("app"), {
//     beforeCalling: () => {...},   // this user starts a call or receives one
//     afterCalling: () => {...},    // the call ended, did not connect, or failed
//     ringtone: "/sounds/ring.mp3", // replace the built-in ring (setCallingBell too)
//     engine,                       // optional: an existing CallEngine to drive
//     layout: "kit",                // optional: only the call UI, hidden while idle
//   });
//
// The hooks fire for every call of the engine: placed from the page, placed with
// engine.calls()/call()/join() directly, or received.

import {
  CallEngine,
  CallEndReason,
  CallRole,
  CallStatus,
  MediaType,
  NetworkQuality,
  RinglineEvent,
  TUICallEvent,
} from "/sdk/ringline.js";

const QUALITY_NAMES = ["unknown", "excellent", "good", "poor", "bad", "very bad", "down"];
const REASON_NAMES = Object.fromEntries(Object.entries(CallEndReason).map(([k, v]) => [v, k.toLowerCase().replace(/_/g, " ")]));
/** @type {Set<string>} */
const QUIET_EVENTS = new Set([TUICallEvent.USER_VOICE_VOLUME, TUICallEvent.ON_USER_NETWORK_QUALITY_CHANGED, RinglineEvent.STATUS_CHANGED, RinglineEvent.LOCAL_STREAM, RinglineEvent.REMOTE_STREAM]);

/** Create an element: h("button.primary", {onclick}, "text", child...). */
function h(tag, attrs = {}, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name);
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false && v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** The built-in ring: two tones, 2 s on, 4 s off, made with Web Audio (no file). */
class SynthRing {
  get playing() {
    return !!this.ctx;
  }

  start() {
    if (this.ctx) return;
    try {
      this.ctx = new AudioContext();
    } catch {
      return;
    }
    const ctx = this.ctx;
    this.gain = ctx.createGain();
    this.gain.gain.value = 0;
    this.gain.connect(ctx.destination);
    for (const f of [440, 480]) {
      const o = ctx.createOscillator();
      o.frequency.value = f;
      o.connect(this.gain);
      o.start();
    }
    const ring = () => {
      const t = ctx.currentTime;
      this.gain.gain.setValueAtTime(0.08, t);
      this.gain.gain.setValueAtTime(0, t + 2);
    };
    ring();
    this.timer = setInterval(ring, 6000);
  }

  stop() {
    clearInterval(this.timer);
    if (this.ctx) this.ctx.close().catch(() => {});
    this.ctx = null;
  }
}

/** A ringtone from a URL (setCallingBell / options.ringtone). */
class FileRing {
  constructor(url) {
    this.url = url;
  }

  get playing() {
    return !!this.audio && !this.audio.paused;
  }

  start() {
    if (this.audio) return;
    this.audio = new Audio(this.url);
    this.audio.loop = true;
    this.audio.play().catch(() => {});
  }

  stop() {
    if (this.audio) {
      this.audio.pause();
      this.audio = null;
    }
  }
}

/**
 * Mount the call page in `root`. Returns a controller:
 * {engine, setCallback({beforeCalling, afterCalling}), setCallingBell(url), signIn(userId, userSig?), calls(ids, media)}.
 */
export function mountCallPage(root, options = {}) {
  // The server this page talks to: given, or the one that served this module.
  const base = new URL("/", options.serverUrl || import.meta.url).href;
  const engine = options.engine || new CallEngine({ serverUrl: base, ...(options.engineOptions || {}) });
  const hooks = { beforeCalling: options.beforeCalling, afterCalling: options.afterCalling };
  let ring = options.ringtone ? new FileRing(options.ringtone) : new SynthRing();
  let config = { sdkAppId: 0, devSignIn: false };
  let beganAt = 0;
  let inCallFlow = false;
  const tiles = new Map(); // userId -> {el, video, bar, quality, mic, cam}
  const log = [];

  // ---------------------------------------------------------------- layout
  root.classList.add("rl-page");
  if (options.layout === "kit") root.classList.add("rl-kit");
  const status = h("span.rl-status", {}, "offline");
  const who = h("span.rl-who");
  const signOutBtn = h("button", { onclick: () => signOut(), hidden: true, id: "rl-signout" }, "Sign out");
  const header = h("header.rl-header", {}, h("strong", {}, "Ringline"), who, status, signOutBtn);

  const userInput = h("input", { id: "rl-user", placeholder: "your user id", autocomplete: "username" });
  const sigInput = h("input", { id: "rl-sig", placeholder: "user sig (from your backend)", hidden: true });
  const signInBtn = h("button.primary", { id: "rl-signin", type: "submit" }, "Sign in");
  const signInMsg = h("p.rl-hint");
  const signInForm = h("form.rl-card", { id: "rl-signin-form", onsubmit: (e) => { e.preventDefault(); signIn(userInput.value.trim(), sigInput.value.trim()); } },
    h("h2", {}, "Sign in"), userInput, sigInput, signInBtn, signInMsg);

  const calleeInput = h("input", { id: "rl-callees", placeholder: "user ids to call, comma separated" });
  const dialMsg = h("p.rl-hint");
  const dial = h("section.rl-card", { id: "rl-dial", hidden: true },
    h("h2", {}, "Call"), calleeInput,
    h("div.rl-row", {},
      h("button.primary", { id: "rl-call-audio", onclick: () => dialOut(MediaType.AUDIO) }, "Audio call"),
      h("button.primary", { id: "rl-call-video", onclick: () => dialOut(MediaType.VIDEO) }, "Video call")),
    dialMsg);

  const incomingText = h("p", { id: "rl-incoming-text" });
  const incoming = h("section.rl-card.rl-incoming", { id: "rl-incoming", hidden: true },
    h("h2", {}, "Incoming call"), incomingText,
    h("div.rl-row", {},
      h("button.accept", { id: "rl-accept", onclick: () => act("accept") }, "Accept"),
      h("button.reject", { id: "rl-reject", onclick: () => act("reject") }, "Reject")));

  const timer = h("span.rl-timer", { id: "rl-timer" }, "00:00");
  const callTitle = h("span.rl-call-title", { id: "rl-call-title" });
  const grid = h("div.rl-grid", { id: "rl-grid" });
  const micBtn = h("button", { id: "rl-mic", onclick: () => toggleMic() }, "Mute");
  const camBtn = h("button", { id: "rl-cam", onclick: () => toggleCam() }, "Camera off");
  const audioBtn = h("button", { id: "rl-to-audio", onclick: () => act("switchCallMediaType", MediaType.AUDIO) }, "Switch to audio");
  const inviteInput = h("input", { id: "rl-invite-ids", placeholder: "invite user ids" });
  const inviteBtn = h("button", { id: "rl-invite", onclick: () => invite() }, "Invite");
  const hangupBtn = h("button.reject", { id: "rl-hangup", onclick: () => act("hangup") }, "Hang up");
  const callView = h("section.rl-call", { id: "rl-call", hidden: true },
    h("div.rl-row.rl-call-head", {}, callTitle, timer),
    grid,
    h("div.rl-row.rl-controls", {}, micBtn, camBtn, audioBtn, inviteInput, inviteBtn, hangupBtn));

  const logList = h("ol.rl-log", { id: "rl-log" });
  const recentList = h("ul.rl-recent", { id: "rl-recent" });
  let recentFilter = 0;
  const tabs = /** @type {Array<[string, number]>} */ ([["All", 0], ["Missed", 1], ["Incoming", 2], ["Outgoing", 3]]).map(([label, type]) =>
    h("button.rl-tab", { dataset: { type }, onclick: () => { recentFilter = type; refreshRecent(); } }, label));
  const side = h("aside.rl-side", {},
    h("section.rl-card", { id: "rl-recent-card", hidden: true }, h("h2", {}, "Recent calls"), h("div.rl-row", {}, ...tabs), recentList),
    h("section.rl-card", {}, h("h2", {}, "Event log"), logList));

  root.append(header, h("main.rl-main", {}, h("div.rl-center", {}, signInForm, dial, incoming, callView), side));

  // ---------------------------------------------------------------- helpers
  const show = (el, on) => { el.hidden = !on; };

  function fire(name) {
    const fn = hooks[name];
    if (typeof fn === "function") {
      try {
        fn();
      } catch (err) {
        console.error(`ringline page: ${name} failed`, err);
      }
    }
  }

  function addLog(name, payload) {
    const t = new Date().toTimeString().slice(0, 8);
    const text = payload && Object.keys(payload).length ? JSON.stringify(payload) : "";
    log.push({ t, name, payload });
    const li = h("li", {}, h("time", {}, t), " ", h("b", {}, name), " ", h("code", {}, text.length > 300 ? text.slice(0, 300) + "…" : text));
    logList.prepend(li);
    while (logList.children.length > 200) logList.lastChild.remove();
  }

  function setStatus(text) {
    status.textContent = text;
    root.dataset.connection = text;
  }

  function render() {
    const signedIn = engine.isInitialized;
    const st = engine.callStatus;
    show(signInForm, !signedIn);
    show(signOutBtn, signedIn);
    show(dial, signedIn && st === CallStatus.NONE);
    show(incoming, signedIn && st === CallStatus.WAITING && engine.callRole === CallRole.CALLED);
    show(callView, signedIn && (st === CallStatus.ACCEPT || (st === CallStatus.WAITING && engine.callRole === CallRole.CALLER)));
    show(root.querySelector("#rl-recent-card"), signedIn);
    const video = engine.mediaType === MediaType.VIDEO;
    show(camBtn, video);
    show(audioBtn, video && st === CallStatus.ACCEPT);
    for (const b of [micBtn, inviteBtn, inviteInput]) b.disabled = st !== CallStatus.ACCEPT;
    root.dataset.status = ["idle", "waiting", "connected"][st];
    who.textContent = signedIn ? engine.userId : "";
    if (st === CallStatus.WAITING && engine.callRole === CallRole.CALLER) callTitle.textContent = "Calling…";
  }

  function tile(userId, isLocal) {
    let t = tiles.get(userId);
    if (t) return t;
    const video = h("video", { autoplay: true, playsinline: true, muted: true });
    video.muted = true;
    const bar = h("div.rl-volume-fill");
    const quality = h("span.rl-quality", { dataset: { quality: 0 }, title: "network quality" }, "●●●●");
    const mic = h("span.rl-flag", { title: "microphone" }, "mic");
    const cam = h("span.rl-flag", { title: "camera" }, "cam");
    const el = h("figure.rl-tile", { dataset: { user: userId } }, video,
      h("figcaption", {}, h("span.rl-name", {}, isLocal ? `${userId} (you)` : userId), mic, cam, quality,
        h("div.rl-volume", { title: "volume" }, bar)));
    grid.append(el);
    t = { el, video, bar, quality, mic, cam };
    tiles.set(userId, t);
    if (isLocal) engine.startLocalView(video);
    else engine.startRemoteView(userId, video);
    return t;
  }

  function dropTile(userId) {
    const t = tiles.get(userId);
    if (!t) return;
    engine.stopRemoteView(userId);
    t.el.remove();
    tiles.delete(userId);
  }

  function clearTiles() {
    for (const id of [...tiles.keys()]) dropTile(id);
    grid.textContent = "";
  }

  function ringOn(on) {
    root.dataset.ringing = on ? "true" : "false";
    if (on) ring.start();
    else ring.stop();
  }

  /** A call of this user starts: beforeCalling, once per call, before its UI shows. */
  function startFlow() {
    if (inCallFlow) return false;
    inCallFlow = true;
    fire("beforeCalling");
    return true;
  }

  function endFlow(message) {
    ringOn(false);
    clearInterval(timerHandle);
    timerHandle = null;
    clearTiles();
    if (message) dialMsg.textContent = message;
    render(); // the call UI goes first, as in the vendor's kit; then the hook
    if (inCallFlow) {
      inCallFlow = false;
      fire("afterCalling");
    }
    refreshRecent();
  }

  let timerHandle = null;
  function startTimer() {
    beganAt = Date.now();
    timer.textContent = "00:00";
    clearInterval(timerHandle);
    timerHandle = setInterval(() => { timer.textContent = clock((Date.now() - beganAt) / 1000); }, 1000);
  }

  async function refreshRecent() {
    if (!engine.isInitialized) return;
    for (const tab of tabs) tab.classList.toggle("active", Number(tab.dataset.type) === recentFilter);
    let records;
    try {
      records = await engine.queryRecentCalls({ resultType: recentFilter, limit: 20 });
    } catch (err) {
      return;
    }
    recentList.textContent = "";
    for (const r of records) {
      const kind = { 1: "missed", 2: "incoming", 3: "outgoing" }[r.result] || "call";
      const peers = r.inviter === engine.userId ? r.inviteList : [r.inviter, ...r.inviteList.filter((u) => u !== engine.userId)];
      const when = new Date(r.beginTime).toLocaleString();
      const callBack = h("button.small", { onclick: () => { calleeInput.value = peers.join(", "); dialOut(r.mediaType || MediaType.AUDIO); } }, "Call");
      recentList.append(h("li", { dataset: { result: kind, callId: r.callId } },
        h("span.rl-kind", {}, kind), " ", h("span", {}, peers.join(", ")), " ",
        h("small", {}, `${r.mediaType === MediaType.VIDEO ? "video" : "audio"} · ${when} · ${clock(r.totalTime)}`), " ", callBack));
    }
    if (!records.length) recentList.append(h("li.rl-hint", {}, "no calls yet"));
  }

  // ---------------------------------------------------------------- actions
  async function signIn(userId, userSig) {
    signInMsg.textContent = "";
    if (!userId) {
      signInMsg.textContent = "Enter your user id.";
      return;
    }
    try {
      let sdkAppId = config.sdkAppId;
      if (!userSig) {
        if (!config.devSignIn) {
          signInMsg.textContent = "Paste a user sig minted by your backend (ringline usersig USER_ID).";
          sigInput.hidden = false;
          return;
        }
        const r = await fetch(new URL("dev/usersig", base), { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ userId }) });
        const body = await r.json();
        if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
        userSig = body.userSig;
        sdkAppId = body.sdkAppId;
      }
      await engine.init({ sdkAppId, userId, userSig });
      render();
      refreshRecent();
    } catch (err) {
      signInMsg.textContent = `Sign-in failed: ${err.message}`;
    }
  }

  async function signOut() {
    await engine.uninit();
    endFlow();
    render();
  }

  async function dialOut(media) {
    dialMsg.textContent = "";
    const ids = calleeInput.value.split(/[\s,]+/).filter(Boolean);
    if (!ids.length) {
      dialMsg.textContent = "Enter at least one user id.";
      return;
    }
    try {
      await engine.calls(ids, media); // starts the flow (see placing below)
      callTitle.textContent = `Calling ${ids.join(", ")}…`;
      tile(engine.userId, true);
    } catch (err) {
      const message = `Call failed: ${err.msg || err.message}`;
      if (engine.callId) dialMsg.textContent = message; // still in another call: its flow goes on
      else endFlow(message);
    }
    render();
  }

  async function act(method, ...args) {
    try {
      await engine[method](...args);
    } catch (err) {
      addLog("error", { method, code: err.code, message: err.msg || err.message });
    }
    if (method === "reject" || method === "hangup") endFlow();
    render();
  }

  async function toggleMic() {
    const muted = micBtn.dataset.muted === "true";
    await act(muted ? "openMicrophone" : "closeMicrophone");
    micBtn.dataset.muted = String(!muted);
    micBtn.textContent = muted ? "Mute" : "Unmute";
    const t = tiles.get(engine.userId);
    if (t) t.mic.classList.toggle("off", !muted);
  }

  async function toggleCam() {
    const off = camBtn.dataset.off === "true";
    await act(off ? "openCamera" : "closeCamera");
    camBtn.dataset.off = String(!off);
    camBtn.textContent = off ? "Camera off" : "Camera on";
    const t = tiles.get(engine.userId);
    if (t) t.cam.classList.toggle("off", !off);
  }

  async function invite() {
    const ids = inviteInput.value.split(/[\s,]+/).filter(Boolean);
    if (!ids.length) return;
    await act("inviteUser", ids);
    inviteInput.value = "";
  }

  // ---------------------------------------------------------------- every call's hooks
  // A call placed through the engine (by this page or by the app directly) starts the
  // flow before its request goes out, as the vendor's kit does in calls(); one that
  // cannot be placed ends it again. An incoming call (or any other way this device
  // enters a call) starts it on the status change, which comes before the call's
  // events and before this page renders the call.
  for (const method of ["calls", "call", "join"]) {
    const placing = engine[method];
    engine[method] = async function placeWithHooks(...args) {
      const started = startFlow();
      try {
        return await placing.apply(engine, args);
      } catch (err) {
        if (started && !engine.callId) endFlow(`Call failed: ${err.msg || err.message}`);
        throw err;
      }
    };
  }
  engine.on(RinglineEvent.STATUS_CHANGED, ({ callStatus }) => {
    if (callStatus !== CallStatus.NONE) startFlow();
  });

  // ---------------------------------------------------------------- engine events
  /** @type {import("/sdk/ringline.js").EventName[]} */
  const logged = [...Object.values(TUICallEvent), RinglineEvent.CONNECTION_CHANGED];
  for (const name of logged) {
    engine.on(name, (/** @type {any} */ p) => { if (!QUIET_EVENTS.has(name)) addLog(name, p); });
  }
  engine.on(RinglineEvent.CONNECTION_CHANGED, ({ state }) => { setStatus(state); render(); });
  engine.on(RinglineEvent.STATUS_CHANGED, () => render());
  engine.on(TUICallEvent.ON_CALL_RECEIVED, (p) => {
    if (engine.callId !== p.callID) return; // busy elsewhere: the server does not ring us
    startFlow(); // already started by the status change; kept for clarity
    const others = p.calleeIdList.filter((u) => u !== engine.userId);
    incomingText.textContent = `${p.inviterNickname || p.callerId} is calling you (${p.callMediaType === MediaType.VIDEO ? "video" : "audio"})` +
      (others.length ? ` with ${others.join(", ")}` : "");
    ringOn(true);
    render();
  });
  engine.on(TUICallEvent.ON_CALL_BEGIN, (p) => {
    ringOn(false);
    callTitle.textContent = p.callMediaType === MediaType.VIDEO ? "Video call" : "Audio call";
    tile(engine.userId, true);
    startTimer();
    render();
  });
  engine.on(TUICallEvent.USER_ENTER, ({ userID }) => tile(userID, false));
  engine.on(TUICallEvent.USER_LEAVE, ({ userID }) => dropTile(userID));
  for (const ev of [TUICallEvent.REJECT, TUICallEvent.NO_RESP, TUICallEvent.LINE_BUSY]) {
    engine.on(ev, ({ userID }) => { dialMsg.textContent = `${userID}: ${ev.slice(2)}`; });
  }
  engine.on(TUICallEvent.CALL_END, (p) => endFlow(`Call ended (${REASON_NAMES[p.reason]} by ${p.userID}) after ${clock(p.totalTime)}`));
  engine.on(TUICallEvent.ON_CALL_NOT_CONNECTED, (p) => endFlow(`Not connected: ${REASON_NAMES[p.reason]} (${p.userID})`));
  engine.on(TUICallEvent.CALL_TYPE_CHANGED, ({ newCallType }) => {
    callTitle.textContent = newCallType === MediaType.VIDEO ? "Video call" : "Audio call";
    render();
  });
  engine.on(TUICallEvent.USER_VIDEO_AVAILABLE, ({ userID, isVideoAvailable }) => {
    const t = tiles.get(userID);
    if (t) t.cam.classList.toggle("off", !isVideoAvailable);
  });
  engine.on(TUICallEvent.USER_AUDIO_AVAILABLE, ({ userID, isAudioAvailable }) => {
    const t = tiles.get(userID);
    if (t) t.mic.classList.toggle("off", !isAudioAvailable);
  });
  engine.on(TUICallEvent.USER_VOICE_VOLUME, ({ volumeMap }) => {
    for (const { userId, audioVolume } of volumeMap) {
      const t = tiles.get(userId);
      if (!t) continue;
      t.bar.style.width = `${audioVolume}%`;
      t.el.dataset.volume = String(audioVolume);
    }
  });
  engine.on(TUICallEvent.ON_USER_NETWORK_QUALITY_CHANGED, ({ networkQualityList }) => {
    for (const { userId, quality } of networkQualityList) {
      const t = tiles.get(userId);
      if (!t) continue;
      t.quality.dataset.quality = String(quality);
      t.quality.title = `network: ${QUALITY_NAMES[quality] || quality}`;
    }
  });
  engine.on(TUICallEvent.KICKED_OUT, () => { signInMsg.textContent = "Signed out: this user signed in elsewhere."; endFlow(); });
  engine.on(TUICallEvent.USER_SIG_EXPIRED, () => { signInMsg.textContent = "Your sign-in expired; sign in again."; });
  engine.on(TUICallEvent.ERROR, () => { if (inCallFlow && !engine.callId) endFlow(); });

  fetch(new URL("app/config.json", base)).then((r) => r.json()).then((c) => {
    config = c;
    sigInput.hidden = !!c.devSignIn;
    signInMsg.textContent = c.devSignIn ? "Development sign-in: any user id works (server runs with --dev)." : "";
    const q = new URLSearchParams(location.search);
    if (q.get("user") && c.devSignIn && options.layout !== "kit") signIn(q.get("user"), "");
  }).catch(() => {});
  setStatus("offline");
  render();

  return {
    engine,
    /** Set the hooks (the vendor kit's setCallback). */
    setCallback(cb = {}) {
      if ("beforeCalling" in cb) hooks.beforeCalling = cb.beforeCalling;
      if ("afterCalling" in cb) hooks.afterCalling = cb.afterCalling;
    },
    /** Replace the ringtone with an audio file URL (null: the built-in ring). */
    setCallingBell(url) {
      ring.stop();
      ring = url ? new FileRing(url) : new SynthRing();
      if (root.dataset.ringing === "true") ring.start();
    },
    /** What rings: {kind: "builtin" | "file", url, playing}. */
    get ringtone() {
      return { kind: ring instanceof FileRing ? "file" : "builtin", url: (ring instanceof FileRing && ring.url) || null, playing: ring.playing };
    },
    signIn,
    signOut,
    /** Call `userIds` as if typed in the page. */
    calls(userIds, media = MediaType.VIDEO) {
      calleeInput.value = userIds.join(", ");
      return dialOut(media);
    },
    log,
    NetworkQuality,
  };
}
