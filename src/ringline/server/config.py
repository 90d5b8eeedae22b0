"""Server settings: one frozen object, read from flags and ``RINGLINE_*`` env vars.

On first start the data folder gets ``app.json`` with a generated app id and secret
key; later starts (and ``ringline usersig``) read it back, so sigs stay valid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.protocol import MAX_MEMBERS
from .webhooks.signing import decode_secret, generate_secret

__all__ = [
    "ICE_TRANSPORT_POLICIES",
    "AppIdentity",
    "CallbackSecrets",
    "Settings",
    "check_ice_transport_policy",
    "check_recording",
    "check_sfu",
    "check_turn",
    "load_callback_secrets",
    "load_identity",
    "parse_ice_servers",
    "turn_credential",
]


@dataclass(frozen=True, slots=True)
class AppIdentity:
    sdk_app_id: int
    secret_key: str
    generated: bool = False


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "ringline-data"
    sdk_app_id: int = 0
    secret_key: str = ""
    db: str = ""
    db_schema: str = ""
    """PostgreSQL schema of the tables (``--db-schema``; empty: ``ringline``)."""
    admin_identifier: str = "administrator"
    heartbeat_interval: float = 5.0
    heartbeat_grace: float = 15.0
    sig_grace: float = 60.0
    log_level: str = "INFO"
    log_format: str = "console"
    """``console`` (readable lines) or ``json`` (one object per line), ``--log-format``."""
    node_id: str = ""
    """This server's name in logs and metrics (``--node-id``; empty: ``<host name>:<port>``)."""
    metrics: bool = False
    """Serve Prometheus metrics at ``GET /metrics`` (``--metrics``)."""
    metrics_token: str = ""
    """If set, ``GET /metrics`` needs ``Authorization: Bearer <token>`` (``--metrics-token``)."""
    max_frame_bytes: int = 64 * 1024
    rate_limit_per_s: float = 100.0
    mailbox_ttl: float = 7 * 86400.0
    max_unacked: int = 5000
    login_timeout: float = 10.0
    """Seconds a WebSocket may stay open without a successful ``login``/``resume`` (close 4010)."""
    max_unauthenticated: int = 64
    """WebSockets one remote address may hold open without a login; more get HTTP 429."""
    header_timeout: float = 10.0
    """Seconds for an HTTP request's line and headers to arrive (after connecting, or after
    the previous response on a kept-alive connection); then the connection is closed."""
    callback_token: str = ""
    """Token of the Tencent-style ``Sign`` on callbacks (``--callback-token``)."""
    webhook_secrets: tuple[str, ...] = ()
    """``whsec_`` secrets of the Standard Webhooks signature, newest first (``--webhook-secret``)."""
    callback_give_up_after: float = 24 * 3600.0
    """Seconds after an event when retrying its callback stops (at least 24 h by default)."""
    callback_retry_delays: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 300.0, 900.0, 1800.0, 3600.0)
    """Caps of the (fully jittered) waits after attempt 1, 2, …; the last one repeats."""
    callback_retention: float = 7 * 86400.0
    """Seconds delivered callbacks stay listed before they are purged (failed ones stay)."""
    callback_workers: int = 0
    """Processes that deliver callbacks (``--callback-workers``); 0: the server's own event loop."""
    callback_workers_on_demand: bool = False
    """Start the callback workers when callbacks are first queued, not at start-up
    (``--callback-workers auto``, the default of ``ringline serve``): a server whose
    app has no callbacks runs no extra process."""
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN URLs clients get at login (``--ice-server``); none: media stays on host candidates."""
    ice_username: str = ""
    """Username for the ``turn:``/``turns:`` servers (``--ice-username``)."""
    ice_credential: str = ""
    """Credential for the ``turn:``/``turns:`` servers (``--ice-credential``)."""
    ice_transport_policy: str = "all"
    """``all`` or ``relay`` (``--ice-transport-policy``): with ``relay`` clients send media
    only through the TURN servers, so members never learn each other's addresses."""
    turn_urls: tuple[str, ...] = ()
    """``turn:``/``turns:`` URLs of TURN servers that share :attr:`turn_secret` (``--turn-url``):
    each device gets its own short-lived credential for them at login and resume."""
    turn_secret: str = field(default="", repr=False)
    """coturn's ``static-auth-secret`` (``--turn-secret``); never shown or sent."""
    turn_ttl: float = 24 * 3600.0
    """Seconds a TURN credential stays valid after the login or resume that handed it out
    (``--turn-ttl``); at least as long as the longest call."""
    sfu_urls: tuple[str, ...] = ()
    """HTTP API URLs of the Janus servers group calls go through (``--sfu janus=URL``,
    docs/sfu.md); none: group calls are a full mesh."""
    sfu_secret: str = field(default="", repr=False)
    """Janus's ``api_secret`` and the VideoRoom's ``admin_key`` (``--sfu-secret``); never
    shown or sent to a client."""
    sfu_min_members: int = 3
    """Calls with at least this many members (ringing or connected) get an SFU room
    (``--sfu-min-members``)."""
    record_calls: bool = False
    """Record every call (``--record-calls``, docs/recording.md); needs the SFU. Without it
    only calls placed with ``params.record`` (or started over REST) are recorded."""
    recordings_dir: str = ""
    """Where recordings go (``--recordings``); empty: ``<data dir>/recordings``. Janus's
    ``.mjr`` files are written under its ``mjr/`` folder, so Janus must be able to write
    there and the server to read there (one machine, or a shared folder)."""
    recording_retention_days: float = 0.0
    """Recordings older than this many days are deleted (``--recording-retention-days``);
    0 keeps them."""
    cluster: str = ""
    """NATS URL of the cluster this node joins (``--cluster``, docs/cluster.md); empty:
    a single node."""
    public_url: str = ""
    """The base URL other nodes reach this one at (``--public-url``; default
    ``http://<host>:<port>``)."""
    cluster_lease: float = 3.0
    """Seconds the node owning the calls holds its lease without renewing it
    (``--cluster-lease``); renewed every third of it. Failover takes about this long."""
    dev: bool = False
    """Development mode (``--dev``): ``POST /dev/usersig`` mints a sig for anyone. Never in production."""

    def ice_server_list(self, user_id: str = "", now: float | None = None) -> list[dict[str, str]]:
        """The ``ice_servers`` of the login and resume results: one ``{urls, username?,
        credential?}`` per URL (RTCIceServer shape). ``--ice-server`` TURN entries carry the
        static username and credential; ``--turn-url`` entries a credential of ``user_id``
        valid ``turn_ttl`` seconds from ``now`` (:func:`turn_credential`), and win over an
        ``--ice-server`` entry with the same URL."""
        out: list[dict[str, str]] = []
        for url in self.ice_servers:
            if url in self.turn_urls:
                continue
            entry = {"urls": url}
            if url.startswith(("turn:", "turns:")):
                if self.ice_username:
                    entry["username"] = self.ice_username
                if self.ice_credential:
                    entry["credential"] = self.ice_credential
            out.append(entry)
        if self.turn_urls:
            expires = (time.time() if now is None else now) + self.turn_ttl
            username, credential = turn_credential(self.turn_secret, user_id, expires)
            out += [{"urls": u, "username": username, "credential": credential} for u in self.turn_urls]
        return out

    @property
    def recordings_path(self) -> Path:
        """The recordings folder: ``--recordings`` or ``<data dir>/recordings`` (absolute,
        as Janus is given paths inside it)."""
        return Path(self.recordings_dir or Path(self.data_dir, "recordings")).resolve()

    @property
    def db_url(self) -> str:
        """The store URL: ``--db`` or SQLite in the data folder."""
        if self.db:
            return self.db
        return f"sqlite:///{Path(self.data_dir, 'ringline.db').resolve()}"


#: Values of ``--ice-transport-policy`` (RTCIceTransportPolicy).
ICE_TRANSPORT_POLICIES = ("all", "relay")


def check_ice_transport_policy(policy: str, ice_servers: tuple[str, ...]) -> str:
    """The policy, checked against the ICE servers; raise ValueError saying what to fix:
    a value other than ``all``/``relay``, or ``relay`` without a ``turn:``/``turns:`` server
    (media could never connect)."""
    value = policy.strip().lower()
    if value not in ICE_TRANSPORT_POLICIES:
        raise ValueError(f"must be all or relay, got {policy!r}")
    if value == "relay" and not any(u.startswith(("turn:", "turns:")) for u in ice_servers):
        raise ValueError(
            "relay sends all media through TURN, but no turn: or turns: server is given; "
            "add one, e.g. --ice-server turn:turn.example.org:3478 "
            "--ice-username USER --ice-credential SECRET"
        )
    return value


def turn_credential(secret: str, user_id: str, expires_at: float) -> tuple[str, str]:
    """The TURN username and credential of ``user_id`` until ``expires_at`` (unix seconds),
    in coturn's ``use-auth-secret`` scheme (the TURN REST API draft): username
    ``"<expiry>:<user_id>"``, credential base64(HMAC-SHA1(secret, username))."""
    username = f"{int(expires_at)}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def check_sfu(entries: tuple[str, ...], secret: str, min_members: int) -> tuple[str, ...]:
    """Check ``--sfu``/``--sfu-secret``/``--sfu-min-members``; the Janus URLs, or
    ValueError saying what to fix."""
    from .sfu import parse_sfu

    urls = tuple(dict.fromkeys(parse_sfu(e).url for e in entries))
    if urls and not secret:
        raise ValueError(
            "--sfu needs --sfu-secret (Janus's api_secret and the VideoRoom's admin_key, see docs/sfu.md)"
        )
    if secret and not urls:
        raise ValueError(
            "--sfu-secret is given but no --sfu; add the SFU, e.g. --sfu janus=http://127.0.0.1:8088/janus"
        )
    if not 2 <= min_members <= MAX_MEMBERS:
        raise ValueError(
            f"--sfu-min-members must be a whole number from 2 to {MAX_MEMBERS}, got {min_members}"
        )
    return urls


def check_turn(urls: tuple[str, ...], secret: str) -> None:
    """Check ``--turn-url``/``--turn-secret`` together; raise ValueError saying what to fix."""
    for url in urls:
        scheme, _, rest = url.partition(":")
        if scheme not in ("turn", "turns") or not rest or any(c.isspace() for c in url):
            raise ValueError(
                f"--turn-url {url!r} must be a turn: or turns: URL, e.g. turn:turn.example.org:3478"
            )
    if urls and not secret:
        raise ValueError(
            "--turn-url needs --turn-secret (the static-auth-secret of the TURN server) "
            "to hand out credentials"
        )
    if secret and not urls:
        raise ValueError(
            "--turn-secret is given but no --turn-url; add the TURN server, "
            "e.g. --turn-url turn:turn.example.org:3478"
        )


def parse_ice_servers(urls: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Check ICE server URLs (``stun:``, ``turn:`` or ``turns:``); raise ValueError naming
    the bad one. Blank entries are dropped, duplicates kept once."""
    out: list[str] = []
    for raw in urls:
        url = raw.strip()
        if not url:
            continue
        scheme, _, rest = url.partition(":")
        if scheme not in ("stun", "turn", "turns") or not rest or any(c.isspace() for c in url):
            raise ValueError(
                f"ICE server {url!r} must be a stun:, turn: or turns: URL, e.g. stun:stun.example.org:3478 "
                "or turn:turn.example.org:3478?transport=udp"
            )
        if url not in out:
            out.append(url)
    return tuple(out)


def load_identity(data_dir: str, sdk_app_id: int = 0, secret_key: str = "") -> AppIdentity:
    """The app id and secret key: given values win; else those kept in
    ``DATA_DIR/app.json``; else new ones are generated and kept there (mode 0600)."""
    path = Path(data_dir, "app.json")
    stored: dict[str, object] = {}
    if path.exists():
        stored = json.loads(path.read_text("utf-8"))
    app_id = sdk_app_id or int(str(stored.get("sdk_app_id", 0) or 0))
    key = secret_key or str(stored.get("secret_key", "") or "")
    generated = False
    if not app_id or not key:
        app_id = app_id or 1400000000 + secrets.randbelow(99_999_999)
        key = key or secrets.token_hex(32)
        generated = True
    if generated or not stored:
        # Kept so that later starts and `ringline usersig` use the same identity.
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"sdk_app_id": app_id, "secret_key": key}), "utf-8")
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    return AppIdentity(app_id, key, generated)


@dataclass(frozen=True, slots=True)
class CallbackSecrets:
    """How callbacks are signed: the Tencent ``Sign`` token and the ``whsec_`` secrets
    (newest first). ``generated`` is True when this start created and kept them."""

    token: str
    webhook_secrets: tuple[str, ...]
    generated: bool = False


def load_callback_secrets(
    data_dir: str, token: str = "", webhook_secrets: tuple[str, ...] = ()
) -> CallbackSecrets:
    """The callback token and webhook secrets: given values win; else those kept in
    ``DATA_DIR/callbacks.json``; else new ones are generated and kept there (mode 0600),
    so that a receiver configured once keeps verifying across restarts.

    Raises ValueError for a malformed ``whsec_`` secret (the message says how to make one).
    """
    path = Path(data_dir, "callbacks.json")
    stored: dict[str, object] = {}
    if path.exists():
        stored = json.loads(path.read_text("utf-8"))
    kept_tok = str(stored.get("callback_token", "") or "")
    raw = stored.get("webhook_secrets")
    kept_secs = tuple(str(x) for x in raw) if isinstance(raw, list) else ()
    for sec in webhook_secrets:
        try:
            decode_secret(sec)
        except ValueError as exc:
            raise ValueError(
                f"bad webhook secret: {exc}; give whsec_ followed by base64 of at least 24 random "
                "bytes, or leave it out and Ringline generates one"
            ) from None
    generated = False
    if not token and not kept_tok:
        kept_tok, generated = secrets.token_urlsafe(24), True
    if not webhook_secrets and not kept_secs:
        kept_secs, generated = (generate_secret(),), True
    if generated:
        # Only what Ringline made is kept on disk; values given by flag or env win.
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"callback_token": kept_tok, "webhook_secrets": list(kept_secs)}), "utf-8")
        os.chmod(tmp, 0o600)
        tmp.replace(path)
    return CallbackSecrets(token or kept_tok, tuple(webhook_secrets) or kept_secs, generated)


def check_recording(record_calls: bool, sfu_urls: tuple[str, ...], retention_days: float) -> None:
    """Check ``--record-calls``/``--recording-retention-days``; ValueError saying what to fix."""
    if record_calls and not sfu_urls:
        raise ValueError(
            "--record-calls needs --sfu: calls are recorded by Janus (see docs/recording.md), "
            "e.g. --sfu janus=http://127.0.0.1:8088/janus --sfu-secret SECRET"
        )
    if retention_days < 0:
        raise ValueError(
            f"--recording-retention-days must be >= 0 (0 keeps recordings), got {retention_days:g}"
        )
