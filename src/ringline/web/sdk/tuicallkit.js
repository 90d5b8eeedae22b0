// Ringline's web kit with the vendor's names: TUICallKitServer (alias TUICallKitAPI)
// and the <tui-call-kit> element, the call UI that the vendor's TUICallKit component
// is. Plain ES module, no build step; served next to the engine at /sdk/tuicallkit.js
// (types: /sdk/tuicallkit.d.ts). Reference: docs/web.md "The web kit".
//
//   import { TUICallKitServer, TUICallEvent } from "/sdk/tuicallkit.js";
//   document.body.append(document.createElement("tui-call-kit"));  // the call UI
//   document.querySelector("tui-call-kit").beforeCalling = () => {...};
//   await TUICallKitServer.init({ SDKAppID, userID, userSig });
//   await TUICallKitServer.calls({ userIDList: ["bob"], type: TUICallType.VIDEO_CALL });
//   TUICallKitServer.getTUICallEngineInstance().on(TUICallEvent.USER_ENTER, fn);
//
// React and Vue use the element through thin wrappers (no build step either):
// createReactTUICallKit(React) and createVueTUICallKit(Vue) return a `TUICallKit`
// component taking beforeCalling / afterCalling.
//
// The hooks fire for every call the user takes part in, at the vendor's moments:
// beforeCalling() before the call UI shows (before the request of calls()/call()/join(),
// whether made through TUICallKitServer, the page or the engine directly; when an
// invitation rings), afterCalling() once the call is over (onCallEnd,
// onCallNotConnected, or an error that leaves no call). Neither gets arguments, as in
// the vendor's kit.

import { CallEngine, TUICallEvent, TUICallType, MediaType, RinglineError, ErrorCode } from "./ringline.js";
import { mountCallPage } from "../app/callpage.js";

export { TUICallEvent, TUICallType, MediaType } from "./ringline.js";

const CSS_URL = new URL("../app/callpage.css", import.meta.url).href;
const SERVER_URL = new URL("/", import.meta.url).href;

function bad(message) {
  return new RinglineError(ErrorCode.PARAM_INVALID, message);
}

/** The vendor's TUICallKitServer: one engine for the page, the hooks, the kit's methods. */
class CallKitServer {
  constructor() {
    this._engine = null;
    this._options = {};
    this._hooks = { beforeCalling: null, afterCalling: null };
    this._page = null;
    this._pageRoot = null;
    this._host = null;
  }

  /** The CallEngine behind the kit (created on first use): the vendor's TUICallEngine instance. */
  getTUICallEngineInstance() {
    if (!this._engine) {
      this._engine = new CallEngine({ serverUrl: this._options.serverUrl || SERVER_URL, ...(this._options.engineOptions || {}) });
      this._ensurePage();
    }
    return this._engine;
  }

  /**
   * Log in: `{SDKAppID | sdkAppID | sdkAppId, userID | userId, userSig}`; Ringline also
   * takes `serverUrl` (default: the server that served this module) and `engineOptions`.
   * @param {any} [params]
   */
  async init(params = {}) {
    if (!params || typeof params !== "object") throw bad("TUICallKitServer.init({SDKAppID, userID, userSig}) takes an object");
    const sdkAppId = params.SDKAppID ?? params.sdkAppID ?? params.sdkAppId;
    const userId = params.userID ?? params.userId;
    if (params.serverUrl || params.engineOptions) {
      if (this._engine && this._engine.isInitialized) {
        throw bad("TUICallKitServer.init(): already logged in; call destroyed() before changing serverUrl or engineOptions");
      }
      if (params.serverUrl) this._options.serverUrl = params.serverUrl;
      if (params.engineOptions) this._options.engineOptions = params.engineOptions;
      if (this._engine) this._remount(); // made before these options: make it again with them
    }
    await this.getTUICallEngineInstance().init({ sdkAppId, userId, userSig: params.userSig });
  }

  /** The vendor's setCallback: `{beforeCalling, afterCalling}` (other keys are ignored). */
  setCallback(callbacks = {}) {
    for (const name of ["beforeCalling", "afterCalling"]) {
      if (name in callbacks) {
        const fn = callbacks[name];
        if (fn !== null && fn !== undefined && typeof fn !== "function") throw bad(`setCallback(): ${name} must be a function`);
        this._hooks[name] = fn || null;
      }
    }
  }

  /** `{userIDList, type, chatGroupID?, roomID?, strRoomID?, userData?, timeout?, offlinePushInfo?, record?}` */
  calls(params) {
    return this.getTUICallEngineInstance().calls(params);
  }

  /** Deprecated by the vendor: `{userID, type, ...}`.
   * @param {any} [params] */
  call(params = {}) {
    const { userID, userId, ...rest } = params;
    return this.getTUICallEngineInstance().calls({ ...rest, userIDList: [userID ?? userId] });
  }

  /** `{callId}` or a call id. */
  join(params) {
    return this.getTUICallEngineInstance().join(typeof params === "string" ? params : params && (params.callId ?? params.callID));
  }

  /** `{userIDList, ...params}` */
  inviteUser(params = {}) {
    const { userIDList, ...rest } = params;
    return this.getTUICallEngineInstance().inviteUser(userIDList, rest);
  }

  accept() { return this.getTUICallEngineInstance().accept(); }
  reject() { return this.getTUICallEngineInstance().reject(); }
  hangup() { return this.getTUICallEngineInstance().hangup(); }

  /** `{nickName, avatar}` */
  setSelfInfo(params = {}) {
    return this.getTUICallEngineInstance().setSelfInfo(params.nickName ?? params.nickname ?? "", params.avatar ?? "");
  }

  /** A ringtone URL for incoming calls; no argument for the built-in ring. */
  setCallingBell(url) {
    this._ensurePage().setCallingBell(url || null);
  }

  /** Log out (the vendor's destroyed(), which is refused during a call). */
  async destroyed() {
    const engine = this._engine;
    if (!engine) return;
    if (engine.callId) throw new RinglineError(ErrorCode.REQUEST_REFUSED, "destroyed(): this user is in a call; hang up first");
    await engine.uninit();
  }

  /** The call UI: mounted once, in the first <tui-call-kit> (until then, in a detached node). */
  _ensurePage() {
    if (this._page) return this._page;
    const engine = this.getTUICallEngineInstance();
    if (this._page) return this._page; // made by getTUICallEngineInstance() just now
    this._pageRoot = document.createElement("div");
    this._page = mountCallPage(this._pageRoot, {
      engine,
      layout: "kit",
      beforeCalling: () => this._fire("beforeCalling"),
      afterCalling: () => this._fire("afterCalling"),
    });
    return this._page;
  }

  _fire(name) {
    const fn = this._hooks[name];
    if (typeof fn === "function") fn();
  }

  _attach(host) {
    this._ensurePage();
    this._host = host;
    host.append(this._pageRoot);
  }

  _remount() {
    if (this._pageRoot) this._pageRoot.remove();
    this._engine = null;
    this._page = null;
    this._pageRoot = null;
    this.getTUICallEngineInstance();
    if (this._host) this._host.append(this._pageRoot);
  }
}

/** The vendor's kit object (also exported under its newer name, TUICallKitAPI). */
export const TUICallKitServer = new CallKitServer();
export const TUICallKitAPI = TUICallKitServer;

/**
 * <tui-call-kit>: the call UI (incoming screen, video tiles, controls), shown while this
 * user is in a call. Properties `beforeCalling` / `afterCalling` are the vendor's props.
 */
export class TUICallKitElement extends HTMLElement {
  constructor() {
    super();
    this._shadow = this.attachShadow({ mode: "open" });
    const css = document.createElement("link");
    css.rel = "stylesheet";
    css.href = CSS_URL;
    this._shadow.append(css);
  }

  get beforeCalling() { return TUICallKitServer._hooks.beforeCalling; }
  set beforeCalling(fn) { TUICallKitServer.setCallback({ beforeCalling: fn }); }
  get afterCalling() { return TUICallKitServer._hooks.afterCalling; }
  set afterCalling(fn) { TUICallKitServer.setCallback({ afterCalling: fn }); }

  connectedCallback() {
    const wrap = document.createElement("div");
    this._shadow.append(wrap);
    TUICallKitServer._attach(wrap);
  }
}

if (typeof customElements !== "undefined" && !customElements.get("tui-call-kit")) {
  customElements.define("tui-call-kit", TUICallKitElement);
}

/**
 * React: `const TUICallKit = createReactTUICallKit(React);` then
 * `<TUICallKit beforeCalling={fn} afterCalling={fn} />` as with the vendor's package.
 */
export function createReactTUICallKit(React) {
  return function TUICallKit(props) {
    const ref = React.useRef(null);
    React.useEffect(() => {
      if (!ref.current) return;
      ref.current.beforeCalling = props.beforeCalling || null;
      ref.current.afterCalling = props.afterCalling || null;
    }, [props.beforeCalling, props.afterCalling]);
    return React.createElement("tui-call-kit", { ref, style: props.style, class: props.className });
  };
}

/**
 * Vue 3: `app.component("TUICallKit", createVueTUICallKit(Vue))`, then
 * `<TUICallKit :beforeCalling="fn" :afterCalling="fn" />` as with the vendor's package.
 */
export function createVueTUICallKit(Vue) {
  return {
    name: "TUICallKit",
    props: { beforeCalling: Function, afterCalling: Function },
    setup(props) {
      const el = Vue.ref(null);
      const apply = () => {
        if (!el.value) return;
        el.value.beforeCalling = props.beforeCalling || null;
        el.value.afterCalling = props.afterCalling || null;
      };
      Vue.onMounted(apply);
      Vue.watch(() => [props.beforeCalling, props.afterCalling], apply);
      return () => Vue.h("tui-call-kit", { ref: el });
    },
  };
}

export default TUICallKitServer;
