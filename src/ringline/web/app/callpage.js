// The Ringline call page: sign in, call one or several people, answer, talk. Whom you
// call is named (their profile, or their id), an offline callee is said to be offline,
// ringback and ringtone are made with Web Audio (and can be muted); video fills the
// window in 1v1 with your own preview as a picture-in-picture, a grid in groups, and an
// avatar stands in for a camera that is off. Errors are sentences for people; the raw
// events and the technical messages are in the folded developer log.
// Built only on the public engine API (/sdk/ringline.js); docs/web.md.
//
//   import { mountCallPage } from "/app/callpage.js";
//   const page = mountCallPage(document.getElementById("app"), {
//     beforeCalling: () => {...},   // this user starts a call or receives one
//     afterCalling: () => {...},    // the call ended, did not connect, or failed
//     ringtone: "/sounds/ring.mp3", // replace the built-in ringtone (setCallingBell too)
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
  ErrorCode,
  MediaType,
  NetworkQuality,
  RinglineEvent,
  TUICallEvent,
} from "/sdk/ringline.js";

const QUALITY_NAMES = ["unknown", "excellent", "good", "poor", "bad", "very bad", "down"];
const USER_ID = /^[A-Za-z0-9_-]{1,32}$/;
const MAX_CALLEES = 8;
/** @type {Set<string>} */
const QUIET_EVENTS = new Set([TUICallEvent.USER_VOICE_VOLUME, TUICallEvent.ON_USER_NETWORK_QUALITY_CHANGED, RinglineEvent.STATUS_CHANGED, RinglineEvent.LOCAL_STREAM, RinglineEvent.REMOTE_STREAM]);
const TONE_MUTED_KEY = "ringline.toneMuted";

// Icons (24×24 strokes), drawn inline so the page needs no image files.
const ICONS = {
  video: '<path d="M3 7h11a1 1 0 0 1 1 1v8a1 1 0 0 1-1 1H3a1 1 0 0 1-1-1V8a1 1 0 0 1 1-1z"/><path d="M15 10l6-3v10l-6-3"/>',
  phone: '<path d="M5 3h3l2 5-2.5 1.5a11 11 0 0 0 5 5L14 12l5 2v3a2 2 0 0 1-2 2A15 15 0 0 1 3 5a2 2 0 0 1 2-2z"/>',
  hangup: '<path d="M3 14.5c5-4.7 13-4.7 18 0l-2.2 2.6-3.6-1.4v-2.6a11 11 0 0 0-6.4 0v2.6l-3.6 1.4z"/>',
  mic: '<rect x="9" y="3" width="6" height="11" rx="3"/><path d="M5 11a7 7 0 0 0 14 0M12 18v3"/>',
  micOff: '<rect x="9" y="3" width="6" height="11" rx="3"/><path d="M5 11a7 7 0 0 0 14 0M12 18v3M3 3l18 18"/>',
  camOff: '<path d="M3 7h11a1 1 0 0 1 1 1v8a1 1 0 0 1-1 1H3a1 1 0 0 1-1-1V8a1 1 0 0 1 1-1z"/><path d="M15 10l6-3v10l-6-3M2 3l20 18"/>',
  audio: '<path d="M4 10v4M8 7v10M12 4v16M16 8v8M20 11v2"/>',
  addUser: '<circle cx="9" cy="8" r="4"/><path d="M2 21a7 7 0 0 1 14 0M19 8v6M16 11h6"/>',
  bell: '<path d="M6 16V11a6 6 0 0 1 12 0v5l2 2H4z"/><path d="M10 21h4"/>',
  bellOff: '<path d="M6 16V11a6 6 0 0 1 12 0v5l2 2H4z"/><path d="M10 21h4M3 3l18 18"/>',
};

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

/** An inline icon (decorative: the button around it carries the words). */
function icon(name) {
  const span = h("span.rl-icon", { "aria-hidden": "true" });
  span.innerHTML = `<svg viewBox="0 0 24 24" width="24" height="24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round">${ICONS[name]}</svg>`;
  return span;
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** "Ann Lee" -> "AL", "bob" -> "BO". */
function initials(name) {
  const words = String(name).trim().split(/[\s._-]+/).filter(Boolean);
  const text = words.length > 1 ? words[0][0] + words[1][0] : String(name).slice(0, 2);
  return text.toUpperCase();
}

/** A stable colour per user (dark enough for white initials). */
function hue(userId) {
  let n = 0;
  for (const ch of userId) n = (n * 31 + ch.charCodeAt(0)) % 360;
  return n;
}

/** A list in words: ["a"] -> "a", ["a", "b", "c"] -> "a, b and c". */
function words(list) {
  return list.length < 2 ? list.join("") : `${list.slice(0, -1).join(", ")} and ${list[list.length - 1]}`;
}

// ---------------------------------------------------------------- tones

/** One AudioContext per page, resumed on the first click or key (browsers only let a
 * page make sound after a gesture, unless told otherwise). */
let sharedAudio = null;
function audioContext() {
  if (!sharedAudio) {
    try {
      sharedAudio = new AudioContext();
    } catch {
      return null;
    }
  }
  if (sharedAudio.state === "suspended") sharedAudio.resume().catch(() => {});
  return sharedAudio;
}

/** The patterns: ringback (the caller hears it while the other side rings: 440+480 Hz,
 * 2 s on, 4 s off) and the ringtone (the callee's: three rising notes, twice, every 3 s). */
const PATTERNS = {
  ringback: { period: 6, level: 0.07, notes: [{ freqs: [440, 480], at: 0, len: 2 }] },
  ringtone: {
    period: 3,
    level: 0.09,
    notes: [0, 0.9].flatMap((t) => [
      { freqs: [659.3], at: t, len: 0.16 },
      { freqs: [784], at: t + 0.2, len: 0.16 },
      { freqs: [987.8], at: t + 0.4, len: 0.3 },
    ]),
  },
};

/** A tone made with Web Audio, no file: `start()`, `stop()`, `muted`. */
class SynthTone {
  constructor(kind) {
    this.kind = kind;
    this.pattern = PATTERNS[kind];
    this.muted = false;
    this.nodes = null;
  }

  get playing() {
    return !!this.nodes && !!sharedAudio && sharedAudio.state === "running";
  }

  start() {
    if (this.nodes) return;
    const ctx = audioContext();
    if (!ctx) return;
    const master = ctx.createGain();
    master.gain.value = this.muted ? 0 : 1;
    master.connect(ctx.destination);
    const voices = this.pattern.notes.map((note) => {
      const gain = ctx.createGain();
      gain.gain.value = 0;
      gain.connect(master);
      const oscs = note.freqs.map((f) => {
        const o = ctx.createOscillator();
        o.frequency.value = f;
        o.connect(gain);
        o.start();
        return o;
      });
      return { note, gain, oscs };
    });
    const level = this.pattern.level;
    const schedule = () => {
      const t0 = ctx.currentTime + 0.02;
      for (const { note, gain } of voices) {
        const g = gain.gain;
        g.setValueAtTime(0, t0 + note.at);
        g.linearRampToValueAtTime(level, t0 + note.at + 0.02);
        g.setValueAtTime(level, t0 + note.at + note.len - 0.03);
        g.linearRampToValueAtTime(0, t0 + note.at + note.len);
      }
    };
    schedule();
    this.nodes = { master, voices, timer: setInterval(schedule, this.pattern.period * 1000) };
  }

  setMuted(muted) {
    this.muted = muted;
    if (this.nodes) this.nodes.master.gain.value = muted ? 0 : 1;
  }

  stop() {
    if (!this.nodes) return;
    clearInterval(this.nodes.timer);
    for (const { oscs } of this.nodes.voices) for (const o of oscs) o.stop();
    this.nodes.master.disconnect();
    this.nodes = null;
  }
}

/** A ringtone from a URL (setCallingBell / options.ringtone). */
class FileTone {
  constructor(url) {
    this.kind = "ringtone";
    this.url = url;
    this.muted = false;
    this.audio = null;
  }

  get playing() {
    return !!this.audio && !this.audio.paused;
  }

  start() {
    if (this.audio) return;
    this.audio = new Audio(this.url);
    this.audio.loop = true;
    this.audio.muted = this.muted;
    this.audio.play().catch(() => {});
  }

  setMuted(muted) {
    this.muted = muted;
    if (this.audio) this.audio.muted = muted;
  }

  stop() {
    if (this.audio) {
      this.audio.pause();
      this.audio = null;
    }
  }
}

// ---------------------------------------------------------------- errors in words

/**
 * What went wrong, for a person: `err` is a RinglineError (or any Error), `action`
 * what they tried ("call", "sign-in", "answer", ...). The technical text goes to the
 * developer log, never here.
 */
function humanError(err, action) {
  const code = err && err.code;
  const raw = String((err && (err.msg || err.message)) || "");
  switch (code) {
    case ErrorCode.DEVICE_ERROR:
      return "Your camera or microphone could not be started. Check that this site may use them and that no other app holds them.";
    case ErrorCode.INIT_FAIL:
    case ErrorCode.SESSION_UNKNOWN:
      return "You are signed out. Sign in again.";
    case ErrorCode.PARAM_INVALID:
      if (action === "call" || action === "invite") return "Ringline could not place that call. Check the user ids and try again.";
      if (action === "name") return "That name is too long. Use a shorter one.";
      return "Ringline could not do that. Try again.";
    case ErrorCode.REQUEST_REFUSED:
      if (action === "call") return "You are already in a call. Hang up first.";
      return "That is not possible at this moment of the call.";
    case ErrorCode.REQUEST_REPEATED:
      return "That is already done.";
    case ErrorCode.SCENE_NOT_SUPPORTED:
      return "This is an audio call: switch to video first.";
    case ErrorCode.NO_PERMISSION:
      return "You were not invited to that call.";
    case ErrorCode.SIGNALING_SEND_FAIL:
      return "The server did not answer in time. Check your connection and try again.";
    case ErrorCode.RATE_LIMITED:
      return "Too many requests at once. Wait a moment and try again.";
    case ErrorCode.CALL_NOT_FOUND:
      return "That call is already over.";
    case 70001:
      return "Your sign-in has expired. Sign in again.";
    default:
      if (typeof code === "number" && code >= 70000 && code < 71000) {
        return "This sign-in key does not work for this user. Ask for a new one.";
      }
      if (err instanceof TypeError || /fetch|network/i.test(raw)) return "The Ringline server cannot be reached. Check your connection.";
      return "Something went wrong. Try again.";
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
  const kit = options.layout === "kit";
  let bell = options.ringtone ? new FileTone(options.ringtone) : new SynthTone("ringtone");
  const ringback = new SynthTone("ringback");
  /** @type {SynthTone | FileTone | null} */
  let tone = null;
  let toneMuted = false;
  try {
    toneMuted = localStorage.getItem(TONE_MUTED_KEY) === "true";
  } catch {
    // storage may be off: the tones start unmuted
  }
  let config = { sdkAppId: 0, devSignIn: false };
  let beganAt = 0;
  let inCallFlow = false;
  /** Whom this call is about, by user id: profile and presence as the server told us. */
  const people = new Map(); // userId -> {nickname, avatar, online}
  /** Invitees of the current call not connected yet, in order. */
  const pending = new Map(); // userId -> "ringing" | "offline"
  const tiles = new Map(); // userId -> {el, video, bar, quality, mic, cam, avatar}
  const log = [];

  const nameOf = (u) => (u === engine.userId ? "You" : (people.get(u) && people.get(u).nickname) || u);

  // ---------------------------------------------------------------- layout
  root.classList.add("rl-page");
  if (kit) root.classList.add("rl-kit");
  const statusText = h("span.rl-status-text", {}, "Offline");
  const status = h("span.rl-status", { id: "rl-connection", role: "status" }, statusText);
  const whoAvatar = h("span.rl-who-avatar", { "aria-hidden": "true" });
  const who = h("span.rl-who", {});
  const signOutBtn = h("button.rl-ghost", { onclick: () => signOut(), hidden: true, id: "rl-signout", type: "button" }, "Sign out");
  const brand = h("span.rl-brand", {}, h("span.rl-logo", { "aria-hidden": "true" }), "Ringline");
  const header = h("header.rl-header", {}, brand, status, h("span.rl-me", {}, whoAvatar, who), signOutBtn);

  // Sign-in.
  const userInput = h("input", { id: "rl-user", name: "user", autocomplete: "username", required: true, spellcheck: "false", autocapitalize: "off" });
  const nameInput = h("input", { id: "rl-name", name: "nickname", autocomplete: "nickname", maxlength: 100 });
  const sigInput = h("input", { id: "rl-sig", name: "usersig", autocomplete: "off", spellcheck: "false" });
  const sigField = h("div.rl-field", { hidden: true }, h("label", { for: "rl-sig" }, "Sign-in key (user sig from your backend)"), sigInput);
  const signInBtn = h("button.primary.rl-wide", { id: "rl-signin", type: "submit" }, "Sign in");
  const signInMsg = h("p.rl-hint", { id: "rl-signin-msg", role: "status" });
  const signInForm = h("form.rl-card.rl-signin", {
    id: "rl-signin-form",
    "aria-labelledby": "rl-signin-title",
    onsubmit: (e) => { e.preventDefault(); signIn(userInput.value.trim(), sigInput.value.trim(), nameInput.value.trim()); },
  },
  h("h1", { id: "rl-signin-title" }, "Sign in to Ringline"),
  h("p.rl-lead", {}, "Audio and video calls in your browser."),
  h("div.rl-field", {}, h("label", { for: "rl-user" }, "User id"), userInput),
  h("div.rl-field", {}, h("label", { for: "rl-name" }, "Your name ", h("span.rl-optional", {}, "(optional, shown to the people you call)")), nameInput),
  sigField, signInBtn, signInMsg);

  // Dial.
  const calleeInput = h("input", { id: "rl-callees", name: "callees", autocomplete: "off", spellcheck: "false", autocapitalize: "off", "aria-describedby": "rl-dial-help" });
  const dialMsg = h("p.rl-notice", { id: "rl-dial-msg", role: "status", "aria-live": "polite" });
  const dial = h("form.rl-card.rl-dial", {
    id: "rl-dial",
    hidden: true,
    "aria-labelledby": "rl-dial-title",
    onsubmit: (e) => {
      e.preventDefault();
      const media = e.submitter && e.submitter.dataset.media === "audio" ? MediaType.AUDIO : MediaType.VIDEO;
      dialOut(media);
    },
  },
  h("h1", { id: "rl-dial-title" }, "Start a call"),
  h("div.rl-field", {}, h("label", { for: "rl-callees" }, "Who do you want to call?"), calleeInput,
    h("small.rl-hint", { id: "rl-dial-help" }, "A user id, or several separated by commas for a group call. Enter places a video call.")),
  h("div.rl-row.rl-dial-buttons", {},
    h("button.primary", { id: "rl-call-video", type: "submit", dataset: { media: "video" } }, icon("video"), "Video call"),
    h("button.secondary", { id: "rl-call-audio", type: "submit", dataset: { media: "audio" } }, icon("phone"), "Audio call")),
  dialMsg);

  // Incoming call (a full-window screen).
  const incomingAvatar = h("div.rl-big-avatar.rl-pulse", { "aria-hidden": "true" });
  const incomingName = h("h2.rl-incoming-name", { id: "rl-incoming-name" });
  const incomingText = h("p.rl-incoming-text", { id: "rl-incoming-text" });
  const acceptBtn = h("button.rl-round.accept", { id: "rl-accept", type: "button", onclick: () => act("accept", "answer") }, icon("phone"), h("span.rl-round-label", {}, "Accept"));
  const rejectBtn = h("button.rl-round.reject", { id: "rl-reject", type: "button", onclick: () => act("reject", "decline") }, icon("hangup"), h("span.rl-round-label", {}, "Decline"));
  const incomingMute = h("button.rl-chip", { id: "rl-tone-mute-incoming", type: "button", "aria-pressed": "false", onclick: () => muteTones(!toneMuted) });
  const incoming = h("section.rl-incoming", { id: "rl-incoming", hidden: true, role: "dialog", "aria-modal": "true", "aria-labelledby": "rl-incoming-name", "aria-describedby": "rl-incoming-text" },
    h("div.rl-incoming-body", {}, incomingAvatar, incomingName, incomingText, incomingMute),
    h("div.rl-incoming-actions", {}, rejectBtn, acceptBtn));

  // The call (a full-window stage).
  const timer = h("span.rl-timer", { id: "rl-timer", "aria-label": "call time" }, "00:00");
  const callTitle = h("h2.rl-call-title", { id: "rl-call-title" });
  const callState = h("p.rl-call-state", { id: "rl-call-state", role: "status", "aria-live": "polite" });
  // Shown while the call is recorded (on_recording, docs/recording.md); announced when it changes.
  const recording = h("p.rl-recording", { id: "rl-recording", role: "status", "aria-live": "polite", hidden: true },
    h("span.rl-recording-dot", { "aria-hidden": "true" }), h("span.rl-recording-text", {}, "Recording"));
  const grid = h("div.rl-grid", { id: "rl-grid", dataset: { layout: "solo" } });
  const dialing = h("div.rl-dialing", { id: "rl-dialing", hidden: true });
  const toast = h("p.rl-toast", { id: "rl-toast", role: "status", "aria-live": "polite", hidden: true });
  const banner = h("p.rl-banner", { id: "rl-reconnecting", role: "alert", hidden: true }, "Connection lost — reconnecting…");
  const control = (id, ic, label, onclick, cls = "") =>
    h(`button.rl-control${cls}`, { id, type: "button", onclick }, icon(ic), h("span.rl-control-label", {}, label));
  const micBtn = control("rl-mic", "micOff", "Mute", () => toggleMic());
  const camBtn = control("rl-cam", "camOff", "Camera off", () => toggleCam());
  const audioBtn = control("rl-to-audio", "audio", "Audio only", () => act("switchCallMediaType", "switch", MediaType.AUDIO));
  const addBtn = control("rl-add", "addUser", "Add people", () => toggleInvite());
  const toneBtn = control("rl-tone-mute", "bellOff", "Mute ringing", () => muteTones(!toneMuted));
  const hangupBtn = control("rl-hangup", "hangup", "Hang up", () => act("hangup", "hang up"), ".hangup");
  const inviteInput = h("input", { id: "rl-invite-ids", name: "invite", autocomplete: "off", spellcheck: "false", autocapitalize: "off" });
  const inviteBtn = h("button.primary", { id: "rl-invite", type: "submit" }, "Invite");
  const inviteForm = h("form.rl-invite", { id: "rl-invite-form", hidden: true, onsubmit: (e) => { e.preventDefault(); invite(); } },
    h("label", { for: "rl-invite-ids" }, "Add people (user ids)"), h("div.rl-row", {}, inviteInput, inviteBtn));
  const callView = h("section.rl-call", { id: "rl-call", hidden: true, "aria-labelledby": "rl-call-title" },
    h("div.rl-call-head", {}, h("div.rl-call-heading", {}, callTitle, callState), recording, timer),
    banner, dialing, grid, toast, inviteForm,
    h("div.rl-controls", { role: "toolbar", "aria-label": "call controls" }, micBtn, camBtn, audioBtn, addBtn, toneBtn, hangupBtn));

  // Recent calls and the developer log.
  const logList = h("ol.rl-log", { id: "rl-log" });
  const recentList = h("ul.rl-recent", { id: "rl-recent" });
  let recentFilter = 0;
  const tabs = /** @type {Array<[string, number]>} */ ([["All", 0], ["Missed", 1], ["Incoming", 2], ["Outgoing", 3]]).map(([label, type]) =>
    h("button.rl-tab", { type: "button", "aria-pressed": "false", dataset: { type }, onclick: () => { recentFilter = type; refreshRecent(); } }, label));
  const recentCard = h("section.rl-card", { id: "rl-recent-card", hidden: true, "aria-labelledby": "rl-recent-title" },
    h("h2", { id: "rl-recent-title" }, "Recent calls"), h("div.rl-tabs", { role: "group", "aria-label": "show" }, ...tabs), recentList);
  const devLog = h("details.rl-devlog", { id: "rl-devlog" }, h("summary", {}, "Developer log"), logList);

  root.append(header, h("main.rl-main", {}, signInForm, dial, recentCard, devLog), incoming, callView);

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

  /** Tell the person what went wrong (`where`: an element) and the developer why. */
  function report(where, err, action) {
    addLog("error", { action, code: err && err.code, message: String((err && (err.msg || err.message)) || err) });
    where.textContent = humanError(err, action);
    where.dataset.kind = "error";
  }

  function notice(where, text, kind = "info") {
    where.textContent = text;
    where.dataset.kind = kind;
  }

  function setStatus(state) {
    statusText.textContent = { online: "Online", reconnecting: "Reconnecting…", offline: "Offline" }[state] || state;
    root.dataset.connection = state;
  }

  /** An avatar: the profile picture, else initials on the user's colour. */
  function avatar(userId, cls = "rl-avatar") {
    const el = h(`div.${cls}`, { "aria-hidden": "true" });
    fillAvatar(el, userId);
    return el;
  }

  function fillAvatar(el, userId) {
    const p = people.get(userId);
    el.textContent = "";
    el.style.setProperty("--hue", String(hue(userId)));
    const label = initials(userId === engine.userId ? (p && p.nickname) || userId : nameOf(userId));
    if (p && p.avatar) {
      const img = h("img", { src: p.avatar, alt: "" });
      img.addEventListener("error", () => { img.remove(); el.textContent = label; });
      el.append(img);
    } else {
      el.textContent = label;
    }
  }

  function setTone(kind) {
    const want = kind === "ringback" ? ringback : kind === "ringtone" ? bell : null;
    if (tone !== want) {
      if (tone) tone.stop();
      tone = want;
      if (tone) {
        tone.setMuted(toneMuted);
        tone.start();
      }
    }
    root.dataset.tone = tone ? tone.kind : "none";
    root.dataset.ringing = kind === "ringtone" ? "true" : "false";
  }

  function muteTones(muted) {
    toneMuted = muted;
    try {
      localStorage.setItem(TONE_MUTED_KEY, String(muted));
    } catch {
      // not kept: fine
    }
    if (tone) tone.setMuted(muted);
    renderToneButtons();
  }

  function renderToneButtons() {
    root.dataset.toneMuted = String(toneMuted);
    for (const b of [toneBtn, incomingMute]) b.setAttribute("aria-pressed", String(toneMuted));
    incomingMute.textContent = "";
    incomingMute.append(icon(toneMuted ? "bellOff" : "bell"), toneMuted ? "Ringtone muted" : "Mute ringtone");
    toneBtn.querySelector(".rl-control-label").textContent = toneMuted ? "Unmute ringing" : "Mute ringing";
    toneBtn.replaceChild(icon(toneMuted ? "bell" : "bellOff"), toneBtn.querySelector(".rl-icon"));
  }

  function render() {
    const signedIn = engine.isInitialized;
    const st = engine.callStatus;
    const caller = engine.callRole === CallRole.CALLER;
    const ringingHere = signedIn && st === CallStatus.WAITING && !caller;
    const dialingOut = signedIn && st === CallStatus.WAITING && caller;
    const connected = signedIn && st === CallStatus.ACCEPT;
    const wasIncomingHidden = incoming.hidden;
    show(signInForm, !signedIn);
    show(signOutBtn, signedIn);
    show(dial, signedIn && st === CallStatus.NONE);
    show(incoming, ringingHere);
    show(callView, dialingOut || connected);
    show(recentCard, signedIn);
    show(devLog, !kit);
    const video = engine.mediaType === MediaType.VIDEO;
    show(camBtn, video);
    show(audioBtn, video && connected);
    show(addBtn, connected);
    show(toneBtn, dialingOut);
    if (!connected) inviteForm.hidden = true;
    micBtn.disabled = !connected;
    inviteBtn.disabled = !connected;
    inviteInput.disabled = !connected;
    hangupBtn.querySelector(".rl-control-label").textContent = dialingOut ? "Cancel" : "Hang up";
    hangupBtn.setAttribute("aria-label", dialingOut ? "Cancel the call" : "Hang up");
    root.dataset.status = ["idle", "waiting", "connected"][st];
    root.dataset.view = !signedIn ? "signin" : ringingHere ? "incoming" : dialingOut ? "dialing" : connected ? "call" : "home";
    document.documentElement.classList.toggle("rl-in-call", !kit && (ringingHere || dialingOut || connected));
    who.textContent = signedIn ? engine.userId : "";
    if (signedIn) fillAvatar(whoAvatar, engine.userId);
    show(whoAvatar, signedIn);
    setTone(dialingOut ? "ringback" : ringingHere ? "ringtone" : null);
    renderToneButtons();
    renderDialing(dialingOut);
    layoutGrid();
    if (ringingHere && wasIncomingHidden) acceptBtn.focus();
  }

  /** The caller's screen while it rings: whom you are calling, and whether they can hear it. */
  function renderDialing(on) {
    show(dialing, on && pending.size > 0);
    if (!on) return;
    const ids = [...pending.keys()];
    const names = ids.map(nameOf);
    callTitle.textContent = ids.length ? `Calling ${words(names)}` : "Calling…";
    const offline = ids.filter((u) => pending.get(u) === "offline");
    callState.textContent = !ids.length
      ? "Ringing…"
      : offline.length === ids.length && ids.length === 1
        ? `${names[0]} is offline — ringing until the timeout`
        : offline.length
          ? `Ringing… ${words(offline.map(nameOf))} ${offline.length > 1 ? "are" : "is"} offline — ringing until the timeout`
          : "Ringing…";
    callState.dataset.offline = offline.length ? "true" : "false";
    dialing.textContent = "";
    for (const u of ids) {
      const off = pending.get(u) === "offline";
      dialing.append(h("div.rl-callee", { dataset: { user: u, presence: off ? "offline" : "ringing" } },
        avatar(u, "rl-big-avatar" + (off ? "" : ".rl-pulse")),
        h("span.rl-callee-name", {}, nameOf(u)),
        h("span.rl-callee-state", {}, off ? "Offline — ringing until the timeout" : "Ringing…")));
    }
  }

  /** 1v1: the other person fills the stage, you are the picture-in-picture; 3+: a grid. */
  function layoutGrid() {
    const remote = [...tiles.keys()].filter((u) => u !== engine.userId);
    const connected = engine.callStatus === CallStatus.ACCEPT;
    const mode = !connected || remote.length === 0 ? "solo" : remote.length === 1 && pendingTiles() === 0 ? "pip" : "grid";
    grid.dataset.layout = mode;
    const n = grid.children.length;
    grid.dataset.count = String(n);
    // Columns: 2 (stacked when narrow), 2 for 3-4 people, then 3 (from 7 people when narrow).
    const wide = (grid.clientWidth || root.clientWidth || 0) >= 700;
    const cols = n <= 1 ? 1 : n === 2 ? (wide ? 2 : 1) : n <= 4 ? 2 : wide || n > 6 ? 3 : 2;
    grid.style.setProperty("--cols", String(cols));
    grid.style.setProperty("--rows", String(Math.max(1, Math.ceil(n / cols))));
    for (const [u, t] of tiles) t.el.classList.toggle("rl-self", u === engine.userId);
    // While dialing only the own preview shows, small, beside the callee's avatar.
    grid.hidden = !connected && !(tiles.has(engine.userId) && engine.mediaType === MediaType.VIDEO);
  }

  const pendingTiles = () => grid.querySelectorAll(".rl-tile.rl-waiting").length;

  function tile(userId, isLocal) {
    let t = tiles.get(userId);
    if (t) return t;
    grid.querySelector(`.rl-waiting[data-user="${userId}"]`)?.remove();
    const video = h("video", { autoplay: true, playsinline: true, muted: true });
    video.muted = true;
    const bar = h("div.rl-volume-fill");
    const quality = h("span.rl-quality", { dataset: { quality: 0 }, title: "network quality", role: "img", "aria-label": "network quality: unknown" }, "●●●●");
    const mic = h("span.rl-flag", { title: "microphone on", role: "img", "aria-label": "microphone on" }, icon("micOff"));
    const cam = h("span.rl-flag", { title: "camera on", role: "img", "aria-label": "camera on" }, icon("camOff"));
    const av = h("div.rl-tile-avatar", { "aria-hidden": "true" }, avatar(userId, "rl-big-avatar"));
    const el = h("figure.rl-tile", { dataset: { user: userId, video: "off" } }, av, video,
      h("figcaption", {}, h("span.rl-name", {}, isLocal ? "You" : nameOf(userId)), mic, cam, quality,
        h("div.rl-volume", { title: "volume", "aria-hidden": "true" }, bar)));
    if (isLocal) grid.append(el);
    else grid.insertBefore(el, grid.querySelector(".rl-self"));
    t = { el, video, bar, quality, mic, cam, avatar: av, camOn: true, frames: false };
    tiles.set(userId, t);
    const tt = t;
    const seen = () => { tt.frames = video.videoWidth > 0; videoState(userId); };
    video.addEventListener("loadeddata", seen);
    video.addEventListener("resize", seen);
    if (isLocal) engine.startLocalView(video);
    else engine.startRemoteView(userId, video);
    videoState(userId);
    layoutGrid();
    return t;
  }

  /** A tile shows video when the call is a video call, the camera is on and frames come; else the avatar. */
  function videoState(userId) {
    const t = tiles.get(userId);
    if (!t) return;
    const on = engine.mediaType === MediaType.VIDEO && t.camOn && t.frames;
    t.el.dataset.video = on ? "on" : "off";
  }

  function setFlag(flag, on, what) {
    flag.classList.toggle("off", !on);
    const text = `${what} ${on ? "on" : "off"}`;
    flag.title = text;
    flag.setAttribute("aria-label", text);
  }

  /** An invitee not in the call yet, shown in the grid (group calls) with its avatar. */
  function waitingTile(userId) {
    if (tiles.has(userId) || grid.querySelector(`.rl-waiting[data-user="${userId}"]`)) return;
    const off = pending.get(userId) === "offline";
    grid.insertBefore(h("figure.rl-tile.rl-waiting", { dataset: { user: userId, video: "off" } }, h("div.rl-tile-avatar", { "aria-hidden": "true" }, avatar(userId, "rl-big-avatar.rl-pulse")),
      h("figcaption", {}, h("span.rl-name", {}, nameOf(userId)), h("span.rl-flag.rl-note", {}, off ? "offline" : "ringing"))), grid.querySelector(".rl-self"));
    layoutGrid();
  }

  function dropTile(userId) {
    const t = tiles.get(userId);
    grid.querySelector(`.rl-waiting[data-user="${userId}"]`)?.remove();
    if (!t) {
      layoutGrid();
      return;
    }
    if (userId !== engine.userId) engine.stopRemoteView(userId);
    t.el.remove();
    tiles.delete(userId);
    layoutGrid();
  }

  function clearTiles() {
    for (const id of [...tiles.keys()]) dropTile(id);
    grid.textContent = "";
  }

  let toastTimer = null;
  function flash(text) {
    toast.textContent = text;
    toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toast.hidden = true; }, 6000);
  }

  /** A call of this user starts: beforeCalling, once per call, before its UI shows. */
  function startFlow() {
    if (inCallFlow) return false;
    inCallFlow = true;
    fire("beforeCalling");
    return true;
  }

  /** The recording indicator: visible text ("Recording") and its title for every reader. */
  function showRecording(on) {
    recording.hidden = !on;
    recording.title = on ? "This call is being recorded" : "";
    recording.setAttribute("aria-label", on ? "This call is being recorded" : "Recording stopped");
  }

  function endFlow(message, kind = "info") {
    clearInterval(timerHandle);
    timerHandle = null;
    showRecording(false);
    clearTiles();
    pending.clear();
    toast.hidden = true;
    if (message) notice(dialMsg, message, kind);
    const hadFocusInCall = callView.contains(document.activeElement) || incoming.contains(document.activeElement);
    render(); // the call UI goes first, as in the vendor's kit; then the hook
    if (hadFocusInCall && !dial.hidden) calleeInput.focus();
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
    for (const tab of tabs) {
      const on = Number(tab.dataset.type) === recentFilter;
      tab.classList.toggle("active", on);
      tab.setAttribute("aria-pressed", String(on));
    }
    let records;
    try {
      records = await engine.queryRecentCalls({ resultType: recentFilter, limit: 20 });
    } catch (err) {
      addLog("error", { action: "recent calls", code: err.code, message: err.msg || err.message });
      return;
    }
    recentList.textContent = "";
    for (const r of records) {
      const kind = { 1: "missed", 2: "incoming", 3: "outgoing" }[r.result] || "call";
      const peers = r.inviter === engine.userId ? r.inviteList : [r.inviter, ...r.inviteList.filter((u) => u !== engine.userId)];
      const when = new Date(r.beginTime).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
      const media = r.mediaType === MediaType.VIDEO ? "video" : "audio";
      const callBack = h("button.rl-small", {
        type: "button",
        "aria-label": `Call ${words(peers)} (${media})`,
        onclick: () => { calleeInput.value = peers.join(", "); dialOut(r.mediaType || MediaType.AUDIO); },
      }, icon(media === "video" ? "video" : "phone"), "Call");
      recentList.append(h("li", { dataset: { result: kind, callId: r.callId } },
        avatar(peers[0] || "?", "rl-avatar"),
        h("div.rl-recent-text", {},
          h("span.rl-recent-peers", {}, words(peers)),
          h("small", {}, h("span.rl-kind", {}, kind), ` · ${media} · ${when}${r.totalTime ? ` · ${clock(r.totalTime)}` : ""}`)),
        callBack));
    }
    if (!records.length) recentList.append(h("li.rl-empty", {}, "No calls yet."));
  }

  // ---------------------------------------------------------------- actions
  async function signIn(userId, userSig, nickname = "") {
    notice(signInMsg, "");
    if (!userId) {
      notice(signInMsg, "Enter your user id.", "error");
      userInput.focus();
      return;
    }
    if (!USER_ID.test(userId)) {
      notice(signInMsg, "A user id is 1 to 32 letters, digits, - or _ (no spaces).", "error");
      userInput.focus();
      return;
    }
    signInBtn.disabled = true;
    try {
      let sdkAppId = config.sdkAppId;
      if (!userSig) {
        if (!config.devSignIn) {
          notice(signInMsg, "Paste the sign-in key your service gave you.", "error");
          sigField.hidden = false;
          sigInput.focus();
          return;
        }
        const r = await fetch(new URL("dev/usersig", base), { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ userId }) });
        const body = await r.json();
        if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
        userSig = body.userSig;
        sdkAppId = body.sdkAppId;
      }
      await engine.init({ sdkAppId, userId, userSig });
      if (nickname) {
        try {
          await engine.setSelfInfo(nickname, "");
          people.set(userId, { nickname, avatar: "", online: true });
        } catch (err) {
          report(signInMsg, err, "name");
        }
      }
      render();
      refreshRecent();
      calleeInput.focus();
    } catch (err) {
      report(signInMsg, err, "sign-in");
      if (!err.code && !(err instanceof TypeError)) signInMsg.textContent = "Sign-in failed. Check your user id and try again.";
    } finally {
      signInBtn.disabled = false;
    }
  }

  async function signOut() {
    await engine.uninit();
    endFlow();
    notice(dialMsg, "");
    render();
  }

  /** The ids typed in `input`, checked as a person would want: null (and a message) if unusable. */
  function idsFrom(input, msg) {
    const raw = input.value.split(/[\s,;]+/).filter(Boolean);
    const bad = raw.filter((u) => !USER_ID.test(u));
    const ids = [...new Set(raw.filter((u) => USER_ID.test(u) && u !== engine.userId))];
    if (!raw.length) notice(msg, "Type the user id of the person to call.", "error");
    else if (bad.length) notice(msg, `“${bad[0]}” is not a user id: use letters, digits, - or _ (up to 32).`, "error");
    else if (!ids.length) notice(msg, "That is you. Type someone else's user id.", "error");
    else if (ids.length > MAX_CALLEES) notice(msg, `A call can have at most ${MAX_CALLEES} other people.`, "error");
    else return ids;
    input.focus();
    return null;
  }

  async function dialOut(media) {
    notice(dialMsg, "");
    const ids = idsFrom(calleeInput, dialMsg);
    if (!ids) return;
    pending.clear();
    for (const u of ids) pending.set(u, "ringing");
    try {
      await engine.calls(ids, media); // starts the flow (see placing below)
      if (media === MediaType.VIDEO || engine.mediaType === MediaType.VIDEO) tile(engine.userId, true);
    } catch (err) {
      pending.clear();
      if (engine.callId) report(toast, err, "call"); // still in another call: its flow goes on
      else {
        endFlow();
        report(dialMsg, err, "call");
      }
    }
    render();
  }

  async function act(method, what, ...args) {
    try {
      await engine[method](...args);
    } catch (err) {
      if (engine.callStatus === CallStatus.NONE) report(dialMsg, err, what);
      else {
        report(toast, err, what);
        toast.hidden = false;
      }
    }
    // The call's own end event says more (who, how long) and may come first or next.
    if ((method === "reject" || method === "hangup") && inCallFlow) endFlow(method === "reject" ? "You declined the call." : "Call ended.");
    render();
  }

  async function toggleMic() {
    const muted = micBtn.dataset.muted === "true";
    await act(muted ? "openMicrophone" : "closeMicrophone", "microphone");
    micBtn.dataset.muted = String(!muted);
    micBtn.setAttribute("aria-pressed", String(!muted));
    micBtn.querySelector(".rl-control-label").textContent = muted ? "Mute" : "Unmute";
    const t = tiles.get(engine.userId);
    if (t) setFlag(t.mic, muted, "microphone");
  }

  async function toggleCam() {
    const off = camBtn.dataset.off === "true";
    await act(off ? "openCamera" : "closeCamera", "camera");
    camBtn.dataset.off = String(!off);
    camBtn.setAttribute("aria-pressed", String(!off));
    camBtn.querySelector(".rl-control-label").textContent = off ? "Camera off" : "Camera on";
    const t = tiles.get(engine.userId);
    if (t) {
      setFlag(t.cam, off, "camera");
      t.camOn = off;
      if (off) engine.startLocalView(t.video);
      videoState(engine.userId);
    }
  }

  function toggleInvite() {
    inviteForm.hidden = !inviteForm.hidden;
    addBtn.setAttribute("aria-expanded", String(!inviteForm.hidden));
    if (!inviteForm.hidden) inviteInput.focus();
  }

  async function invite() {
    const ids = idsFrom(inviteInput, toast);
    if (!ids) {
      toast.hidden = false;
      return;
    }
    for (const u of ids) if (!tiles.has(u)) pending.set(u, "ringing");
    try {
      await engine.inviteUser(ids);
      inviteInput.value = "";
      inviteForm.hidden = true;
      flash(`Calling ${words(ids.map(nameOf))}…`);
    } catch (err) {
      for (const u of ids) if (!tiles.has(u)) pending.delete(u);
      report(toast, err, "invite");
      toast.hidden = false;
    }
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
        if (started && !engine.callId) {
          endFlow();
          report(dialMsg, err, "call");
        }
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
  engine.on(RinglineEvent.CONNECTION_CHANGED, ({ state }) => {
    setStatus(state);
    banner.hidden = state === "online";
    render();
  });
  engine.on(RinglineEvent.STATUS_CHANGED, () => render());
  engine.on(RinglineEvent.CALL_RECORDING_CHANGED, ({ callID, isRecording }) => {
    if (callID !== engine.callId) return;
    addLog(RinglineEvent.CALL_RECORDING_CHANGED, { callID, isRecording });
    showRecording(isRecording);
  });
  engine.on(TUICallEvent.ON_USER_INVITING, (p) => {
    if (p.callID !== engine.callId) return;
    people.set(p.userID, { nickname: p.nickname || "", avatar: p.avatar || "", online: p.isOnline !== false });
    if (!tiles.has(p.userID)) pending.set(p.userID, p.isOnline === false ? "offline" : "ringing");
    if (engine.callStatus === CallStatus.ACCEPT) waitingTile(p.userID);
    render();
  });
  engine.on(TUICallEvent.ON_CALL_RECEIVED, (p) => {
    if (engine.callId !== p.callID) return; // busy elsewhere: the server does not ring us
    startFlow(); // already started by the status change; kept for clarity
    people.set(p.callerId, { nickname: p.inviterNickname || "", avatar: p.inviterAvatar || "", online: true });
    const others = p.calleeIdList.filter((u) => u !== engine.userId);
    fillAvatar(incomingAvatar, p.callerId);
    incomingName.textContent = nameOf(p.callerId);
    const kind = p.callMediaType === MediaType.VIDEO ? "video" : "audio";
    incomingText.textContent = `${nameOf(p.callerId)}${nameOf(p.callerId) !== p.callerId ? ` (${p.callerId})` : ""} is calling you — ${kind} call` +
      (others.length ? `, with ${words(others.map(nameOf))}` : "");
    incoming.dataset.media = kind;
    render();
  });
  engine.on(TUICallEvent.ON_CALL_BEGIN, (p) => {
    callTitle.textContent = p.callMediaType === MediaType.VIDEO ? "Video call" : "Audio call";
    callState.textContent = "";
    tile(engine.userId, true);
    startTimer();
    render();
    for (const u of pending.keys()) if (!tiles.has(u)) waitingTile(u);
    if (callView.contains(document.activeElement) || incoming.contains(document.activeElement) || document.activeElement === document.body) hangupBtn.focus();
  });
  engine.on(TUICallEvent.USER_ENTER, ({ userID }) => {
    pending.delete(userID);
    tile(userID, false);
    if (engine.callStatus === CallStatus.ACCEPT && tiles.size > 2) flash(`${nameOf(userID)} joined`);
  });
  engine.on(TUICallEvent.USER_LEAVE, ({ userID }) => {
    dropTile(userID);
    if (engine.callStatus === CallStatus.ACCEPT) flash(`${nameOf(userID)} left the call`);
  });
  const memberGone = { [TUICallEvent.REJECT]: "declined", [TUICallEvent.NO_RESP]: "did not answer", [TUICallEvent.LINE_BUSY]: "is busy in another call" };
  for (const ev of [TUICallEvent.REJECT, TUICallEvent.NO_RESP, TUICallEvent.LINE_BUSY]) {
    engine.on(ev, ({ userID }) => {
      pending.delete(userID);
      dropTile(userID);
      flash(`${nameOf(userID)} ${memberGone[ev]}`);
      render();
    });
  }
  engine.on(TUICallEvent.CALL_END, (p) => {
    const by = p.userID === engine.userId ? "You hung up" : p.reason === CallEndReason.OFFLINE ? `The connection to ${nameOf(p.userID)} was lost` : `${nameOf(p.userID)} hung up`;
    const text = p.reason === CallEndReason.END_BY_SERVER ? "The call was ended by the service" : by;
    endFlow(`Call ended · ${text} · ${clock(p.totalTime)}`);
  });
  engine.on(TUICallEvent.ON_CALL_NOT_CONNECTED, (p) => endFlow(notConnected(p), "warn"));
  engine.on(TUICallEvent.CALL_TYPE_CHANGED, ({ newCallType }) => {
    callTitle.textContent = newCallType === MediaType.VIDEO ? "Video call" : "Audio call";
    for (const u of tiles.keys()) videoState(u);
    render();
  });
  engine.on(TUICallEvent.USER_VIDEO_AVAILABLE, ({ userID, isVideoAvailable }) => {
    const t = tiles.get(userID);
    if (!t) return;
    setFlag(t.cam, isVideoAvailable, "camera");
    t.camOn = isVideoAvailable;
    videoState(userID);
  });
  engine.on(TUICallEvent.USER_AUDIO_AVAILABLE, ({ userID, isAudioAvailable }) => {
    const t = tiles.get(userID);
    if (t) setFlag(t.mic, isAudioAvailable, "microphone");
  });
  engine.on(TUICallEvent.USER_VOICE_VOLUME, ({ volumeMap }) => {
    for (const { userId, audioVolume } of volumeMap) {
      const t = tiles.get(userId);
      if (!t) continue;
      t.bar.style.width = `${audioVolume}%`;
      t.el.dataset.volume = String(audioVolume);
      t.el.classList.toggle("rl-speaking", audioVolume > 20);
    }
  });
  engine.on(TUICallEvent.ON_USER_NETWORK_QUALITY_CHANGED, ({ networkQualityList }) => {
    for (const { userId, quality } of networkQualityList) {
      const t = tiles.get(userId);
      if (!t) continue;
      t.quality.dataset.quality = String(quality);
      t.quality.title = `network: ${QUALITY_NAMES[quality] || quality}`;
      t.quality.setAttribute("aria-label", t.quality.title);
    }
  });
  engine.on(TUICallEvent.KICKED_OUT, () => {
    endFlow();
    notice(signInMsg, "You were signed out because this user signed in somewhere else.", "warn");
    render();
  });
  engine.on(TUICallEvent.USER_SIG_EXPIRED, () => notice(signInMsg, "Your sign-in has expired. Sign in again.", "warn"));
  engine.on(TUICallEvent.ERROR, (p) => {
    if (inCallFlow && !engine.callId) {
      endFlow();
      notice(dialMsg, humanError(p, "call"), "error");
    } else if (inCallFlow) flash(humanError(p, "call"));
  });

  /** Why a call did not connect, in words, from this device's side. */
  function notConnected(p) {
    const them = nameOf(p.userID);
    const caller = p.callRole === CallRole.CALLER;
    switch (p.reason) {
      case CallEndReason.REJECT:
        return caller ? `${them} declined the call.` : "You declined the call.";
      case CallEndReason.NO_RESPONSE:
        return caller ? `${them} did not answer.` : "You missed a call.";
      case CallEndReason.LINE_BUSY:
        return `${them} is busy in another call.`;
      case CallEndReason.OFFLINE:
        return caller ? `${them} could not be reached.` : "The call was lost: the connection dropped.";
      case CallEndReason.CANCELED:
        return caller ? "Call cancelled." : `${them} cancelled the call — you missed it.`;
      case CallEndReason.OTHER_DEVICE_ACCEPTED:
        return "Answered on another of your devices.";
      case CallEndReason.OTHER_DEVICE_REJECT:
        return "Declined on another of your devices.";
      case CallEndReason.END_BY_SERVER:
        return "The call was ended by the service.";
      default:
        return "The call did not connect.";
    }
  }

  addEventListener("resize", () => { if (engine.callStatus === CallStatus.ACCEPT) layoutGrid(); });
  // Browsers let a page make sound only after a click or a key: get the tones' audio
  // ready then, so that a call arriving later can ring.
  for (const ev of ["pointerdown", "keydown"]) addEventListener(ev, () => audioContext(), { once: true, capture: true });

  fetch(new URL("app/config.json", base)).then((r) => r.json()).then((c) => {
    config = c;
    sigField.hidden = !!c.devSignIn;
    notice(signInMsg, c.devSignIn ? "Development sign-in: any user id works (the server runs with --dev)." : "");
    const q = new URLSearchParams(location.search);
    if (q.get("user") && c.devSignIn && !kit) signIn(q.get("user"), "", q.get("name") || "");
  }).catch((err) => report(signInMsg, err, "sign-in"));
  setStatus("offline");
  render();

  return {
    engine,
    /** Set the hooks (the vendor kit's setCallback). */
    setCallback(cb = {}) {
      if ("beforeCalling" in cb) hooks.beforeCalling = cb.beforeCalling;
      if ("afterCalling" in cb) hooks.afterCalling = cb.afterCalling;
    },
    /** Replace the ringtone with an audio file URL (null: the built-in one). */
    setCallingBell(url) {
      const ringing = tone === bell;
      bell.stop();
      bell = url ? new FileTone(url) : new SynthTone("ringtone");
      if (ringing) {
        tone = null;
        setTone("ringtone");
      }
    },
    /** What rings for an incoming call: {kind: "builtin" | "file", url, playing}. */
    get ringtone() {
      return { kind: bell instanceof FileTone ? "file" : "builtin", url: (bell instanceof FileTone && bell.url) || null, playing: bell.playing };
    },
    /** The tone playing now: {kind: "ringback" | "ringtone" | "none", playing, muted}. */
    get tone() {
      return { kind: tone ? tone.kind : "none", playing: !!tone && tone.playing, muted: toneMuted };
    },
    /** Mute or unmute the ringback and the ringtone (kept across calls in this browser). */
    muteTones,
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
