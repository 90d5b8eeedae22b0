// The admin REST client of the console (docs/admin.md): every call carries the admin
// identity exactly as the REST API wants it (docs/rest.md#authentication):
//   POST /v4/{service}/{command}?sdkappid=&identifier=&usersig=&random=&contenttype=json
// The sig is kept in sessionStorage only (gone when the tab closes), never in lasting
// storage or a cookie.

const KEY = "ringline-admin";

/** The error codes that mean "these credentials are not an admin's" (docs/rest.md). */
export const AUTH_CODES = new Set([60011, 70001, 70002, 70003, 70009, 70013, 70014, 70015]);

/** A refused command: `code` is the REST ErrorCode, `message` its ErrorInfo. */
export class AdminError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
    this.auth = AUTH_CODES.has(code);
  }
}

/** The saved credentials {identifier, usersig}, or null. */
export function loadCredentials() {
  try {
    const c = JSON.parse(sessionStorage.getItem(KEY) || "null");
    return c && typeof c.usersig === "string" && c.usersig ? c : null;
  } catch {
    return null;
  }
}

export function saveCredentials(c) {
  sessionStorage.setItem(KEY, JSON.stringify({ identifier: c.identifier, usersig: c.usersig }));
}

export function forgetCredentials() {
  sessionStorage.removeItem(KEY);
}

/**
 * Credentials handed over in the URL fragment (`#usersig=…&identifier=…`), or null.
 * The fragment is removed from the address bar (and its history entry) once read.
 */
export function takeFragmentCredentials() {
  const hash = location.hash.replace(/^#/, "");
  if (!hash) return null;
  const q = new URLSearchParams(hash);
  const usersig = q.get("usersig") || q.get("sig");
  history.replaceState(null, "", location.pathname + location.search);
  if (!usersig) return null;
  return { identifier: q.get("identifier") || "administrator", usersig };
}

/** Calls the admin REST API of the server that served this page. */
export class AdminApi {
  constructor(base, sdkAppId, credentials) {
    this.base = base;
    this.sdkAppId = sdkAppId;
    this.credentials = credentials;
  }

  /** `await api.v4("call_engine_http_srv/get_live_calls", {})`: the Response, or throws AdminError. */
  async v4(command, body = {}) {
    const q = new URLSearchParams({
      sdkappid: String(this.sdkAppId),
      identifier: this.credentials.identifier,
      usersig: this.credentials.usersig,
      random: String(Math.floor(Math.random() * 4294967295)),
      contenttype: "json",
    });
    let res;
    try {
      res = await fetch(new URL(`v4/${command}?${q}`, this.base), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        cache: "no-store",
      });
    } catch (err) {
      throw new AdminError(-1, `the server cannot be reached (${err.message})`);
    }
    let env;
    try {
      env = await res.json();
    } catch {
      throw new AdminError(-1, `the server answered HTTP ${res.status} without a JSON envelope`);
    }
    if (env.ErrorCode !== 0) throw new AdminError(env.ErrorCode, env.ErrorInfo || `error ${env.ErrorCode}`);
    return env.Response;
  }
}
