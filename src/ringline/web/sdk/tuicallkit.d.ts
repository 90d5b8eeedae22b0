// Types of Ringline's web kit (/sdk/tuicallkit.js). Reference: docs/web.md "The web kit".

import type { CallEngine, CallParams, CallsOptions, MediaTypeValue } from "./ringline.js";

export { TUICallEvent, TUICallType, MediaType } from "./ringline.js";

/** beforeCalling / afterCalling: called with no arguments, as in the vendor's kit. */
export type CallingHook = () => void;

export interface TUICallKitInitParams {
  /** The vendor's spelling; sdkAppID and sdkAppId work too. */
  SDKAppID?: number;
  sdkAppID?: number;
  sdkAppId?: number;
  /** The vendor's spelling; userId works too. */
  userID?: string;
  userId?: string;
  userSig: string;
  /** Ringline: the server (default: the one that served tuicallkit.js), or several
   * (a cluster; see CallEngineOptions.serverUrl). */
  serverUrl?: string | string[];
  /** Ringline: options of the CallEngine (audio/video constraints, deviceId …). */
  engineOptions?: Record<string, unknown>;
}

export interface TUICallKitServerType {
  /** The CallEngine behind the kit; created on first use. */
  getTUICallEngineInstance(): CallEngine;
  init(params: TUICallKitInitParams): Promise<void>;
  setCallback(callbacks: { beforeCalling?: CallingHook | null; afterCalling?: CallingHook | null }): void;
  calls(params: CallsOptions): Promise<{ callId: string; callID: string }>;
  /** @deprecated use calls({userIDList: [userID], type}) */
  call(params: { userID: string; type: MediaTypeValue } & Omit<CallsOptions, "userIDList" | "type">): Promise<{ callId: string; callID: string }>;
  join(params: { callId: string } | string): Promise<void>;
  inviteUser(params: { userIDList: string[] } & CallParams): Promise<string[]>;
  accept(): Promise<void>;
  reject(): Promise<void>;
  hangup(): Promise<void>;
  setSelfInfo(params: { nickName: string; avatar?: string }): Promise<void>;
  /** A ringtone URL; no argument for the built-in ring. */
  setCallingBell(url?: string | null): void;
  /** Log out; refused during a call. */
  destroyed(): Promise<void>;
}

export declare const TUICallKitServer: TUICallKitServerType;
/** The vendor's newer name of TUICallKitServer. */
export declare const TUICallKitAPI: TUICallKitServerType;

/** <tui-call-kit>: the call UI, shown while this user is in a call. */
export declare class TUICallKitElement extends HTMLElement {
  beforeCalling: CallingHook | null;
  afterCalling: CallingHook | null;
}

export interface TUICallKitProps {
  beforeCalling?: CallingHook;
  afterCalling?: CallingHook;
  style?: unknown;
  className?: string;
}

/** React: `const TUICallKit = createReactTUICallKit(React)`. */
export declare function createReactTUICallKit(React: unknown): (props: TUICallKitProps) => unknown;
/** Vue 3: `app.component("TUICallKit", createVueTUICallKit(Vue))`. */
export declare function createVueTUICallKit(Vue: unknown): object;

declare global {
  interface HTMLElementTagNameMap {
    "tui-call-kit": TUICallKitElement;
  }
}

export default TUICallKitServer;
