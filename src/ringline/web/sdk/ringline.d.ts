// Types of the Ringline browser engine (/sdk/ringline.js). Reference: docs/web.md.

/** Vendor web event names (docs/spec.md §8). */
export declare const TUICallEvent: {
  readonly ERROR: "onError";
  readonly ON_CALL_RECEIVED: "onCallReceived";
  readonly ON_CALL_BEGIN: "onCallBegin";
  readonly CALL_END: "onCallEnd";
  readonly ON_CALL_NOT_CONNECTED: "onCallNotConnected";
  readonly ON_CALL_CANCELED: "onCallCanceled";
  readonly ON_USER_INVITING: "onUserInviting";
  readonly USER_ENTER: "onUserEnter";
  readonly USER_LEAVE: "onUserLeave";
  readonly REJECT: "onReject";
  readonly NO_RESP: "onNoResp";
  readonly LINE_BUSY: "onLineBusy";
  readonly USER_VIDEO_AVAILABLE: "onUserVideoAvailable";
  readonly USER_AUDIO_AVAILABLE: "onUserAudioAvailable";
  readonly USER_VOICE_VOLUME: "onUserVoiceVolume";
  readonly ON_USER_NETWORK_QUALITY_CHANGED: "onUserNetworkQualityChanged";
  readonly CALL_TYPE_CHANGED: "onCallTypeChanged";
  readonly KICKED_OUT: "onKickedOut";
  readonly USER_SIG_EXPIRED: "onUserSigExpired";
};

/** Ringline's own events. */
export declare const RinglineEvent: {
  readonly REMOTE_STREAM: "onRemoteStream";
  readonly LOCAL_STREAM: "onLocalStream";
  readonly STATUS_CHANGED: "onStatusChanged";
  readonly CONNECTION_CHANGED: "onConnectionChanged";
  readonly CALL_RECORDING_CHANGED: "onCallRecordingChanged";
};

export declare const MediaType: { readonly UNKNOWN: 0; readonly AUDIO: 1; readonly VIDEO: 2 };
export declare const TUICallType: { readonly AUDIO_CALL: 1; readonly VIDEO_CALL: 2 };
export declare const CallRole: { readonly NONE: 0; readonly CALLER: 1; readonly CALLED: 2 };
export declare const CallStatus: { readonly NONE: 0; readonly WAITING: 1; readonly ACCEPT: 2 };
export declare const CallScene: {
  readonly NONE: 0; readonly GROUP_CALL: 1; readonly MULTI_CALL: 2; readonly SINGLE_CALL: 3;
};
export declare const CallEndReason: {
  readonly UNKNOWN: 0; readonly HANGUP: 1; readonly REJECT: 2; readonly NO_RESPONSE: 3;
  readonly OFFLINE: 4; readonly LINE_BUSY: 5; readonly CANCELED: 6;
  readonly OTHER_DEVICE_ACCEPTED: 7; readonly OTHER_DEVICE_REJECT: 8; readonly END_BY_SERVER: 9;
};
export declare const NetworkQuality: {
  readonly UNKNOWN: 0; readonly EXCELLENT: 1; readonly GOOD: 2; readonly POOR: 3;
  readonly BAD: 4; readonly VERY_BAD: 5; readonly DOWN: 6;
};
export declare const CallResultType: {
  readonly UNKNOWN: 0; readonly MISSED: 1; readonly INCOMING: 2; readonly OUTGOING: 3;
};
export declare const ErrorCode: {
  readonly DEVICE_ERROR: -1101;
  readonly INIT_FAIL: -1201;
  readonly PARAM_INVALID: -1202;
  readonly REQUEST_REFUSED: -1203;
  readonly REQUEST_REPEATED: -1204;
  readonly SCENE_NOT_SUPPORTED: -1205;
  readonly NO_PERMISSION: -1206;
  readonly SIGNALING_SEND_FAIL: -1406;
  readonly FRAME_TOO_LARGE: -1412;
  readonly RATE_LIMITED: -1413;
  readonly SESSION_UNKNOWN: -1414;
  readonly CALL_NOT_FOUND: 8010;
};

export type MediaTypeValue = 0 | 1 | 2;
export type CallRoleValue = 0 | 1 | 2;
export type CallStatusValue = 0 | 1 | 2;
export type CallEndReasonValue = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9;
export type NetworkQualityValue = 0 | 1 | 2 | 3 | 4 | 5 | 6;

/** Every rejected promise of the engine. */
export declare class RinglineError extends Error {
  constructor(code: number, message: string);
  readonly code: number;
  /** The message without the code. */
  readonly msg: string;
}

export interface CallEngineOptions {
  /** The server's base URL; default: the page's origin. Or, for a cluster, 1-16
   * different ones: the engine logs in through the first that answers and, at every
   * reconnect, resumes on the next one (round robin; at once after close 1012). */
  serverUrl?: string | string[];
  /** 1-64 chars of [A-Za-z0-9_.:-]; default: generated once per tab and user. */
  deviceId?: string;
  /** Milliseconds every request may take (default 10000). */
  requestTimeout?: number;
  /** Hang up / decline the current call when the tab closes (default true). */
  endCallOnUnload?: boolean;
  /** getUserMedia audio constraints, or false for no microphone (default true). */
  audio?: boolean | MediaTrackConstraints;
  /** getUserMedia video constraints, or false for no camera (default 640x480 @ 15 fps). */
  video?: boolean | MediaTrackConstraints;
  /** Log to the console (default false). */
  debug?: boolean;
}

export interface RoomId { intRoomId: number; strRoomId: string }

export interface CallParams {
  roomId?: RoomId;
  /** Ring timeout in seconds, 1-600 (0 = 30). */
  timeout?: number;
  /** At most 1000 bytes. */
  userData?: string;
  offlinePushInfo?: { title?: string; desc?: string; extension?: string };
  chatGroupId?: string;
  isEphemeralCall?: boolean;
  /** Record the call (the server needs an SFU; see docs/recording.md). */
  record?: boolean;
}

/** The vendor's object form of calls(). */
export interface CallsOptions {
  userIDList: string[];
  type: MediaTypeValue;
  timeout?: number;
  userData?: string;
  chatGroupID?: string;
  roomID?: number;
  strRoomID?: string;
  isEphemeralCall?: boolean;
  /** Record the call (the server needs an SFU; see docs/recording.md). */
  record?: boolean;
  offlinePushInfo?: { title?: string; desc?: string; extension?: string };
}

export interface CallInfo {
  roomId: RoomId;
  role: CallRoleValue;
  userData: string;
  chatGroupId: string;
  ringTimeLeft?: number;
  inviterId?: string;
  inviterNickname?: string;
  inviterAvatar?: string;
}

export interface CallRecords {
  callId: string;
  inviter: string;
  inviteList: string[];
  scene: number;
  mediaType: MediaTypeValue;
  groupId: string;
  role: CallRoleValue;
  /** CallResultType: 1 missed, 2 incoming, 3 outgoing. */
  result: number;
  /** Unix milliseconds. */
  beginTime: number;
  /** Seconds. */
  totalTime: number;
}

interface WithCall { callID: string }
/** `userId` is the vendor's uni-app spelling of `userID`; both are set. */
interface WithUser extends WithCall { userID: string; userId: string }
interface WithRoom { roomID: number; strRoomID: string }

export interface EventPayloads {
  onError: { code: number; msg: string; message: string };
  onCallReceived: WithCall & WithRoom & {
    callerId: string; calleeIdList: string[]; userIDList: string[]; groupID: string; groupId: string;
    callMediaType: MediaTypeValue; callRole: CallRoleValue; userData: string;
    inviterId?: string; inviterNickname?: string; inviterAvatar?: string; ringTimeLeft?: number;
    info: CallInfo;
  };
  onCallBegin: WithCall & WithRoom & { callRole: CallRoleValue; callMediaType: MediaTypeValue; info: CallInfo };
  onCallEnd: WithCall & WithRoom & {
    callMediaType: MediaTypeValue; callRole: CallRoleValue; reason: CallEndReasonValue;
    /** Who ended the call. */
    userID: string; userId: string;
    /** Seconds since this device's onCallBegin. */
    totalTime: number; callEnd: number; info: CallInfo;
  };
  onCallNotConnected: WithCall & WithRoom & {
    callMediaType: MediaTypeValue; callRole: CallRoleValue; reason: CallEndReasonValue; userID: string;
    userId: string; info: CallInfo;
  };
  onCallCanceled: WithUser & Partial<WithRoom> & {
    reason: "cancel" | "reject" | "timeout" | "busyline" | "otherDeviceAccepted" | "otherDeviceReject" | "offline" | "endByServer" | "normal";
    callMediaType?: MediaTypeValue; callRole?: CallRoleValue;
  };
  onUserInviting: WithUser & {
    /** The invitee's profile (setSelfInfo), "" when it has none. */
    nickname: string; avatar: string;
    /** Whether any device of the invitee was logged in when invited (false: it rings only if one logs in before the timeout). */
    isOnline: boolean;
  };
  onUserEnter: WithUser;
  onUserLeave: WithUser;
  onReject: WithUser;
  onNoResp: WithUser & { sponsor: string; userIDList: string[] };
  onLineBusy: WithUser;
  onUserVideoAvailable: WithUser & { isVideoAvailable: boolean };
  onUserAudioAvailable: WithUser & { isAudioAvailable: boolean };
  onUserVoiceVolume: WithCall & { volumeMap: { userId: string; audioVolume: number }[] };
  onUserNetworkQualityChanged: WithCall & { networkQualityList: { userId: string; quality: NetworkQualityValue }[] };
  onCallTypeChanged: WithCall & { oldCallType: MediaTypeValue; newCallType: MediaTypeValue };
  onKickedOut: Record<string, never>;
  onUserSigExpired: Record<string, never>;
  onRemoteStream: { userID: string; stream: MediaStream };
  onLocalStream: { stream: MediaStream };
  onStatusChanged: { callID: string; callStatus: CallStatusValue; callRole: CallRoleValue; callMediaType: MediaTypeValue };
  onConnectionChanged: { state: "online" | "reconnecting" | "offline"; resumed?: boolean; reason?: string };
  /** The call is recorded from now on (isRecording), or no longer (docs/recording.md). */
  onCallRecordingChanged: { callID: string; isRecording: boolean };
}

export type EventName = keyof EventPayloads;

/**
 * The vendor's uni-app / mini-program event names (VENDOR_EVENTS) and their payloads:
 * the payload of the Ringline event each maps to, plus the vendor's keys.
 */
export interface VendorEventPayloads {
  onCallCancelled: EventPayloads["onCallCanceled"];
  onCallMediaTypeChanged: EventPayloads["onCallTypeChanged"] & {
    oldCallMediaType: MediaTypeValue; newCallMediaType: MediaTypeValue;
  };
  onUserReject: EventPayloads["onReject"];
  onUserNoResponse: EventPayloads["onNoResp"];
  onUserLineBusy: EventPayloads["onLineBusy"];
  onUserJoin: EventPayloads["onUserEnter"];
  onUserVoiceVolumeChanged: WithCall & {
    /** {userId: volume 0..100}, as the vendor's uni-app engine sends it. */
    volumeMap: Record<string, number>;
    /** The web engine's list (onUserVoiceVolume's volumeMap). */
    volumeList: { userId: string; audioVolume: number }[];
  };
  onKickedOffline: EventPayloads["onKickedOut"];
  onKickedOffLine: EventPayloads["onKickedOut"];
}

export type VendorEventName = keyof VendorEventPayloads;
export type AnyEventPayloads = EventPayloads & VendorEventPayloads;
export type AnyEventName = keyof AnyEventPayloads;

/** Each vendor name -> the Ringline event it fires with (one table, ringline.js). */
export declare const VENDOR_EVENTS: {
  readonly [K in VendorEventName | "onError" | "onCallReceived" | "onCallBegin" | "onCallEnd" | "onCallNotConnected"
    | "onUserInviting" | "onUserLeave" | "onUserVideoAvailable" | "onUserAudioAvailable"
    | "onUserNetworkQualityChanged" | "onUserSigExpired"]: { readonly event: EventName };
};

export declare class CallEngine {
  constructor(options?: CallEngineOptions);

  readonly userId: string;
  readonly deviceId: string;
  readonly callId: string;
  readonly callStatus: CallStatusValue;
  readonly callRole: CallRoleValue;
  readonly mediaType: MediaTypeValue;
  readonly isInitialized: boolean;
  readonly localStream: MediaStream;
  readonly remoteUsers: string[];
  /** The STUN/TURN servers of the login result (`ice_servers`), passed to every RTCPeerConnection. */
  readonly iceServers: RTCIceServer[];
  /** The server URL in use, as given (while reconnecting: the one tried next). */
  readonly serverUrl: string;
  /** Every server URL given, in order. */
  readonly serverUrls: string[];
  /**
   * The login result's `ice_transport_policy` (`ringline serve --ice-transport-policy`):
   * "relay" sends all media through the TURN servers; passed to every RTCPeerConnection.
   */
  readonly iceTransportPolicy: RTCIceTransportPolicy;

  /** A handler for a TUICallEvent / RinglineEvent value or a vendor name (VENDOR_EVENTS). */
  on<E extends AnyEventName>(event: E, fn: (payload: AnyEventPayloads[E]) => void): void;
  off<E extends AnyEventName>(event: E, fn?: (payload: AnyEventPayloads[E]) => void): void;
  /** The vendor's uni-app / mini-program spelling of on(). */
  addEventListener<E extends AnyEventName>(event: E, fn: (payload: AnyEventPayloads[E]) => void): void;
  /** The vendor's uni-app / mini-program spelling of off(). */
  removeEventListener<E extends AnyEventName>(event: E, fn?: (payload: AnyEventPayloads[E]) => void): void;

  init(args: { sdkAppId: number; userId: string; userSig: string; multiDevice?: boolean }): Promise<void>;
  uninit(): Promise<void>;

  calls(userIdList: string[], mediaType: MediaTypeValue, params?: CallParams): Promise<{ callId: string; callID: string }>;
  calls(options: CallsOptions): Promise<{ callId: string; callID: string }>;
  /** @deprecated use calls([userId], mediaType, params) */
  call(userId: string, mediaType: MediaTypeValue, params?: CallParams): Promise<{ callId: string; callID: string }>;
  accept(): Promise<void>;
  reject(): Promise<void>;
  ignore(): Promise<void>;
  hangup(): Promise<void>;
  inviteUser(userIdList: string[], params?: CallParams): Promise<string[]>;
  join(callId: string): Promise<void>;
  switchCallMediaType(mediaType: MediaTypeValue): Promise<void>;
  openCamera(view?: HTMLVideoElement | string): Promise<void>;
  closeCamera(): Promise<void>;
  openMicrophone(): Promise<void>;
  closeMicrophone(): Promise<void>;
  setSelfInfo(nickname: string, avatar?: string): Promise<void>;
  enableMultiDeviceAbility(enable: boolean): Promise<void>;
  queryRecentCalls(filter?: { resultType?: number; limit?: number; begin?: number; end?: number }): Promise<CallRecords[]>;
  deleteRecordCalls(callIdList: string[]): Promise<string[]>;
  renewUserSig(userSig: string): Promise<void>;

  startLocalView(view: HTMLVideoElement | string): void;
  startRemoteView(userId: string, view: HTMLVideoElement | string): void;
  stopRemoteView(userId: string): void;
  getRemoteStream(userId: string): MediaStream | null;
  getPeerConnection(userId: string): RTCPeerConnection | null;
}

/** NetworkQuality from rtt (ms), loss (%) and jitter (ms): the worst grade (docs/media.md §5). */
export declare function gradeQuality(m: { rtt?: number | null; loss?: number | null; jitter?: number | null }): NetworkQualityValue;
/** 0..100 from a linear level 0..1. */
export declare function volumeOf(level: number): number;

export default CallEngine;
