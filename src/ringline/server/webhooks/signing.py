"""Webhook signatures, both kinds a receiver may know. Pure functions, no I/O.

Every callback Ringline sends carries two independent signatures; a receiver checks
whichever it already knows (or both):

* **Tencent style** (what a TUICallKit receiver ported to Ringline checks): query
  parameters ``Sign=hex(sha256(token + RequestTime))`` and ``RequestTime=<unix s>``
  beside ``SdkAppid`` / ``CallbackCommand`` / ``contenttype=json`` (v4 callbacks) or
  ``sdkappid`` / ``command`` / ``contenttype=json`` (v1 callbacks). It authenticates the
  sender but NOT the body: use it with HTTPS. Build with :func:`tencent_query`, check
  with :func:`verify_tencent` (tolerance 60 s, as Tencent's receivers use).
* **Standard Webhooks** (https://www.standardwebhooks.com): headers ``webhook-id``,
  ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256(key,
  "{id}.{timestamp}.{body}")>`` with a ``whsec_<base64 key>`` secret. It covers the body.
  Build with :func:`standard_headers` / :func:`sign_standard`, check with
  :func:`verify_standard` (tolerance 5 min). Several secrets give several
  space-separated signatures, which is how a secret is rotated without downtime: sign
  with old and new, move the receiver to the new one, then drop the old.

Every check raises :class:`WebhookVerificationError` whose message says what is wrong
(missing parameter, stale timestamp, no matching signature…); a receiver answers 401.
A malformed *secret* is a configuration error and raises :class:`ValueError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
import time
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "MIN_SECRET_BYTES",
    "SECRET_PREFIX",
    "STANDARD_TOLERANCE",
    "TENCENT_TOLERANCE",
    "WebhookVerificationError",
    "decode_secret",
    "generate_secret",
    "is_v4_command",
    "sign_standard",
    "standard_headers",
    "tencent_query",
    "tencent_sign",
    "verify_standard",
    "verify_tencent",
]

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
STANDARD_TOLERANCE = 300.0
"""Seconds a ``webhook-timestamp`` may differ from the receiver's clock (either way)."""
TENCENT_TOLERANCE = 60.0
"""Seconds a Tencent ``RequestTime`` may differ from the receiver's clock (either way)."""


class WebhookVerificationError(Exception):
    """A callback request failed verification; the message says why. Answer 401."""


# -- Tencent style ---------------------------------------------------------------------


def tencent_sign(token: str, request_time: int) -> str:
    """``hex(sha256(token + str(request_time)))``, lowercase: the ``Sign`` parameter."""
    return hashlib.sha256(f"{token}{int(request_time)}".encode()).hexdigest()


def is_v4_command(command: str) -> bool:
    """True for v4 callback commands (``Call.CallbackAfter…``), False for v1 ones
    (``normal_end``, ``caller_start_call``…). The two use different query names."""
    return command.startswith("Call.")


def tencent_query(
    *,
    sdk_app_id: int,
    command: str,
    token: str,
    request_time: int,
    extra: Iterable[tuple[str, str]] = (),
) -> dict[str, str]:
    """The query parameters of one callback request, in the vendor's spelling.

    v4 commands: ``SdkAppid, CallbackCommand, contenttype=json, Sign, RequestTime``;
    v1 commands: ``sdkappid, command, contenttype=json, Sign, RequestTime``; ``extra``
    pairs (``ClientIP``/``OptPlatform``, v1 ``clientip``/``optplatform``) come after
    ``contenttype``. Compute them anew for every attempt (``RequestTime`` is the time
    of the attempt).
    """
    if not token:
        raise ValueError("the Tencent callback token is empty; set one (1-128 characters)")
    if is_v4_command(command):
        query = {"SdkAppid": str(sdk_app_id), "CallbackCommand": command}
    else:
        query = {"sdkappid": str(sdk_app_id), "command": command}
    query["contenttype"] = "json"
    for key, value in extra:
        query.setdefault(key, value)
    query["Sign"] = tencent_sign(token, request_time)
    query["RequestTime"] = str(int(request_time))
    return query


def verify_tencent(
    token: str,
    query: Mapping[str, str],
    *,
    sdk_app_id: int | None = None,
    now: float | None = None,
    tolerance: float = TENCENT_TOLERANCE,
) -> None:
    """Check the ``Sign`` / ``RequestTime`` query parameters of a received callback.

    ``query`` is the request's query (e.g. aiohttp's ``request.query``). With
    ``sdk_app_id`` the ``SdkAppid`` (or v1 ``sdkappid``) parameter must match too.
    Raises :class:`WebhookVerificationError`; returns None when all is well.
    """
    sign = query.get("Sign")
    raw_time = query.get("RequestTime")
    if not sign or not raw_time:
        missing = [k for k, v in (("Sign", sign), ("RequestTime", raw_time)) if not v]
        raise WebhookVerificationError(f"missing query parameter(s): {', '.join(missing)}")
    if sdk_app_id is not None:
        got = query.get("SdkAppid", query.get("sdkappid"))
        if got != str(sdk_app_id):
            raise WebhookVerificationError(f"SdkAppid is {got!r}, expected {sdk_app_id}")
    if not raw_time.isdigit():
        raise WebhookVerificationError(f"RequestTime {raw_time!r} is not a unix time in seconds")
    request_time = int(raw_time)
    _check_age(request_time, now, tolerance, "RequestTime")
    expected = tencent_sign(token, request_time)
    if not hmac.compare_digest(expected.encode(), sign.lower().encode()):
        raise WebhookVerificationError("Sign does not match sha256(token + RequestTime): wrong token?")


# -- Standard Webhooks -----------------------------------------------------------------


def generate_secret(nbytes: int = 32) -> str:
    """A new ``whsec_`` secret: ``nbytes`` (≥ 24) random bytes, base64. Give it to the
    receiver once, keep it with the callback configuration."""
    if nbytes < MIN_SECRET_BYTES:
        raise ValueError(f"a webhook secret needs at least {MIN_SECRET_BYTES} random bytes, not {nbytes}")
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(nbytes)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix may be left out)."""
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"webhook secret is not '{SECRET_PREFIX}' + base64: {exc}") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(
            f"webhook secret decodes to {len(key)} bytes; use at least {MIN_SECRET_BYTES} "
            "(generate one with generate_secret())"
        )
    return key


def _signed_content(msg_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{msg_id}.{int(timestamp)}.".encode() + body


def _secret_list(secret: str | Sequence[str]) -> list[str]:
    found = [secret] if isinstance(secret, str) else list(secret)
    if not found:
        raise ValueError("no webhook secret given")
    return found


def sign_standard(secret: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,<base64 HMAC-SHA256>``.

    ``body`` is the exact bytes sent. Several secrets (key rotation) give several
    signatures separated by single spaces, the first secret's first.
    """
    content = _signed_content(msg_id, timestamp, body)
    sigs = []
    for s in _secret_list(secret):
        digest = hmac.new(decode_secret(s), content, hashlib.sha256).digest()
        sigs.append("v1," + base64.b64encode(digest).decode("ascii"))
    return " ".join(sigs)


def standard_headers(secret: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` for one attempt.
    ``msg_id`` is the stable event id (the same on every retry); ``timestamp`` is the
    time of this attempt in unix seconds."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": sign_standard(secret, msg_id, timestamp, body),
    }


def verify_standard(
    secret: str | Sequence[str],
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    tolerance: float = STANDARD_TOLERANCE,
) -> str:
    """Check the Standard Webhooks headers of a received callback; returns the
    ``webhook-id`` (use it to drop duplicates).

    ``body`` must be the raw request bytes, not re-serialised JSON. ``headers`` may use
    any case. Accepts the request when ANY ``v1`` signature in the header matches ANY of
    the given secrets (key rotation on either side). Compares in constant time.
    Raises :class:`WebhookVerificationError`.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    raw_ts = lower.get("webhook-timestamp")
    sig_header = lower.get("webhook-signature")
    missing = [
        name
        for name, value in (
            ("webhook-id", msg_id),
            ("webhook-timestamp", raw_ts),
            ("webhook-signature", sig_header),
        )
        if not value
    ]
    if missing or msg_id is None or raw_ts is None or sig_header is None:
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    if not raw_ts.isdigit():
        raise WebhookVerificationError(f"webhook-timestamp {raw_ts!r} is not a unix time in seconds")
    timestamp = int(raw_ts)
    _check_age(timestamp, now, tolerance, "webhook-timestamp")
    content = _signed_content(msg_id, timestamp, body)
    expected = [hmac.new(decode_secret(s), content, hashlib.sha256).digest() for s in _secret_list(secret)]
    seen_v1 = False
    for item in sig_header.split():
        version, sep, encoded = item.partition(",")
        if not sep or version != "v1":
            continue  # other schemes (v1a = ed25519) are not ours to check
        seen_v1 = True
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        matched = False
        for digest in expected:  # no early exit: the time taken does not depend on which matched
            matched |= hmac.compare_digest(digest, given)
        if matched:
            return msg_id
    if not seen_v1:
        raise WebhookVerificationError("webhook-signature has no 'v1,<base64>' signature")
    raise WebhookVerificationError("no webhook-signature matches: wrong secret, or the body was altered")


def _check_age(stamp: int, now: float | None, tolerance: float, name: str) -> None:
    current = time.time() if now is None else now
    if stamp < current - tolerance:
        raise WebhookVerificationError(
            f"{name} is {current - stamp:.0f} s old (tolerance {tolerance:.0f} s): "
            "replayed, or a clock is wrong"
        )
    if stamp > current + tolerance:
        raise WebhookVerificationError(
            f"{name} is {stamp - current:.0f} s in the future (tolerance {tolerance:.0f} s): a clock is wrong"
        )
