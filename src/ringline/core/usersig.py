"""UserSig: mint and verify TLSSigAPIv2 login tickets (docs/spec.md §1).

A user sig is ``b64x(zlib(json))``. ``b64x`` is standard base64 with ``+``→``*``,
``/``→``-`` and ``=``→``_``; the JSON document holds ``TLS.ver`` ("2.0"),
``TLS.identifier``, ``TLS.sdkappid``, ``TLS.time``, ``TLS.expire``, optionally
``TLS.userbuf`` (standard base64), and ``TLS.sig``, the standard base64 of
HMAC-SHA256 keyed with the app's secret key *as UTF-8 text* over::

    TLS.identifier:{identifier}\\n
    TLS.sdkappid:{sdkappid}\\n
    TLS.time:{time}\\n
    TLS.expire:{expire}\\n
    TLS.userbuf:{userbuf}\\n        <- only when the document has a userbuf

:func:`gen_user_sig` produces exactly the bytes the official PyPI generator
(``tls-sig-api-v2``) produces for the same inputs, and :func:`verify_user_sig` accepts
sigs from any TLSSigAPIv2 generator (Python, Go, Java, Node, C++, browser), because it
parses the JSON instead of comparing bytes.

Verification checks, in this order, and stops at the first failure; each failure has its
own code so the client can tell the user what to fix:

====  ============================  ============================================
step  problem                       code
====  ============================  ============================================
1     empty / whitespace only       ``SIG_EMPTY`` (70002)
2     too long, bad base64, not     ``SIG_MALFORMED`` (70003)
      zlib, too big once inflated,
      not JSON, missing field,
      wrong field type
3     ``TLS.ver`` is not "2.0"      ``SIG_VERSION`` (70015)
4     other ``sdk_app_id``          ``SIG_APP_MISMATCH`` (70014)
5     other user id                 ``SIG_IDENTIFIER_MISMATCH`` (70013)
6     ``now > time + expire``       ``SIG_EXPIRED`` (70001)
7     HMAC differs                  ``SIG_BAD_SIGNATURE`` (70009)
====  ============================  ============================================

This module is pure: no I/O and no clock. The caller passes ``now``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, NoReturn, TypeVar

from ringline.core.errors import ErrorCode, LocalCallError
from ringline.core.protocol import USER_ID

__all__ = [
    "DEFAULT_EXPIRE",
    "MAX_USER_SIG_CHARS",
    "SigInfo",
    "UserSigError",
    "gen_user_sig",
    "verify_user_sig",
]

#: Default validity of a minted sig, in seconds (180 days, as the official generator).
DEFAULT_EXPIRE: Final = 180 * 86400
#: Longest user sig :func:`verify_user_sig` will look at. A real one is ~200 characters;
#: a userbuf of a few KiB still fits.
MAX_USER_SIG_CHARS: Final = 8 * 1024
#: Largest JSON document accepted once inflated. Larger means a zip bomb or junk.
_MAX_JSON_BYTES: Final = 64 * 1024

_VERSION: Final = "2.0"
_UINT32_MAX: Final = 2**32 - 1
# Go's verifier keeps time and expire in int64; anything outside is not a real sig.
_INT64_MAX: Final = 2**63 - 1
_B64X_RE: Final = re.compile(r"[A-Za-z0-9*\-]*_{0,2}")
_WHITESPACE: Final = " \t\r\n"
_T = TypeVar("_T")

_REMINT: Final = (
    "mint a new one with `ringline usersig USER_ID` or your own TLSSigAPIv2 generator "
    "and call renew_user_sig()/init() again"
)


class UserSigError(LocalCallError):
    """A user sig was refused. ``code`` is one of the ``ErrorCode.SIG_*`` values.

    ``message`` says what is wrong and what to do. The right reaction is nearly always
    to mint a new sig (with the right app, user and secret key) and log in again, or to
    pass it to ``renew_user_sig()``; retrying with the same sig never helps.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(code, message)


@dataclass(frozen=True, slots=True)
class SigInfo:
    """What a verified user sig says.

    ``time`` is when it was minted and ``expire`` its validity, both in seconds, as the
    generator wrote them. ``userbuf`` is the decoded ``TLS.userbuf`` (``None`` if the
    sig has none). The caller must schedule its own expiry handling from
    :attr:`expires_at`: a sig is valid while ``now <= expires_at``.
    """

    identifier: str
    sdk_app_id: int
    time: int
    expire: int
    userbuf: bytes | None

    @property
    def expires_at(self) -> int:
        """Unix time (s) after which the sig is expired (``now > expires_at``)."""
        return self.time + self.expire


def gen_user_sig(
    sdk_app_id: int,
    secret_key: str,
    user_id: str,
    expire: int = DEFAULT_EXPIRE,
    *,
    now: int,
    userbuf: bytes | None = None,
) -> str:
    """Mint a TLSSigAPIv2 user sig, byte for byte what the official generator makes.

    ``now`` is the mint time in Unix seconds (pass ``int(time.time())``); the sig is valid
    until ``now + expire``. ``secret_key`` is the app's secret key as text (it is used as
    UTF-8 bytes, never hex-decoded). ``user_id`` must be 1-32 characters of
    ``[A-Za-z0-9_-]``. ``userbuf`` is optional opaque bytes bound into the signature.

    Keep the secret key on the server: mint sigs there and hand them to clients.

    Raises :class:`~ringline.core.errors.LocalCallError` with ``PARAM_INVALID`` if an
    argument is out of range; fix the argument, nothing else will help.
    """
    if isinstance(sdk_app_id, bool) or not isinstance(sdk_app_id, int):
        _bad_param(f"sdk_app_id must be an int, got {type(sdk_app_id).__name__}")
    if not 1 <= sdk_app_id <= _UINT32_MAX:
        _bad_param(f"sdk_app_id must be in 1..{_UINT32_MAX}, got {sdk_app_id}")
    if not isinstance(secret_key, str) or not secret_key:
        _bad_param("secret_key must be the app's non-empty secret key (text)")
    if not isinstance(user_id, str) or USER_ID.fullmatch(user_id) is None:
        _bad_param(f"user_id must be 1-32 characters of [A-Za-z0-9_-], got {_show(user_id)}")
    if isinstance(expire, bool) or not isinstance(expire, int) or not 1 <= expire <= _INT64_MAX:
        _bad_param(f"expire must be a positive int number of seconds, got {_show(expire)}")
    if isinstance(now, bool) or not isinstance(now, int) or not 0 <= now <= _INT64_MAX:
        _bad_param(f"now must be int Unix seconds (int(time.time())), got {_show(now)}")
    if userbuf is not None and not isinstance(userbuf, bytes):
        _bad_param(f"userbuf must be bytes or None, got {type(userbuf).__name__}")

    b64_userbuf = None if userbuf is None else base64.b64encode(userbuf).decode("ascii")
    # Same key order, separators and zlib level as the official generator, so the output
    # is byte-identical to it.
    doc: dict[str, str | int] = {
        "TLS.ver": _VERSION,
        "TLS.identifier": user_id,
        "TLS.sdkappid": sdk_app_id,
        "TLS.expire": expire,
        "TLS.time": now,
    }
    if b64_userbuf is not None:
        doc["TLS.userbuf"] = b64_userbuf
    doc["TLS.sig"] = base64.b64encode(
        _hmac(secret_key, user_id, sdk_app_id, now, expire, b64_userbuf)
    ).decode("ascii")
    compressed = zlib.compress(json.dumps(doc).encode("utf-8"))
    return base64.b64encode(compressed).decode("ascii").replace("+", "*").replace("/", "-").replace("=", "_")


def verify_user_sig(
    user_sig: str,
    *,
    sdk_app_id: int,
    user_id: str,
    secret_key: str,
    now: float,
    via: Literal["sdk", "rest"] = "sdk",
) -> SigInfo:
    """Check that ``user_sig`` lets ``user_id`` log in to app ``sdk_app_id`` at ``now``.

    ``now`` is the server's Unix time in seconds; ``secret_key`` the app's secret key.
    Surrounding whitespace in ``user_sig`` is ignored (pasted sigs often carry a newline).
    ``via`` picks the words of the error messages: ``"sdk"`` for a login (they speak of
    ``init()`` and ``renew_user_sig()``), ``"rest"`` for the ``usersig`` query parameter
    of an admin REST request (they speak of that parameter and the admin identifier).

    Returns the :class:`SigInfo` on success; the caller must treat the session as
    expired once ``now > info.expires_at`` and ask the client for a new sig.

    Raises :class:`UserSigError` (and nothing else, whatever the string) with the code of
    the first failed check; see the module docstring for the order. Send its code and
    message to the client unchanged. Raises a plain
    :class:`~ringline.core.errors.LocalCallError` (``PARAM_INVALID``) only if
    ``secret_key`` is empty, which is a server configuration error.
    """
    if not isinstance(secret_key, str) or not secret_key:
        raise LocalCallError(
            ErrorCode.PARAM_INVALID,
            "secret_key is empty: configure the app's secret key before verifying sigs",
        )
    if via == "rest":
        try:
            return verify_user_sig(
                user_sig, sdk_app_id=sdk_app_id, user_id=user_id, secret_key=secret_key, now=now
            )
        except UserSigError as e:
            raise UserSigError(ErrorCode(e.code), _for_rest(e, user_id)) from None
    doc = _decode(user_sig)
    info, b64_userbuf, sig = _fields(doc)

    if info.sdk_app_id != sdk_app_id:
        raise UserSigError(
            ErrorCode.SIG_APP_MISMATCH,
            f"user sig was made for sdk_app_id {info.sdk_app_id}, not {_show(sdk_app_id)}: "
            "mint it with this app's SDKAppID and secret key, and pass the same "
            "sdk_app_id to init()",
        )
    if info.identifier != user_id:
        raise UserSigError(
            ErrorCode.SIG_IDENTIFIER_MISMATCH,
            f"user sig was made for user {_show(info.identifier)}, not {_show(user_id)}: "
            "mint a sig for the user_id you log in with (init() needs the same user_id "
            "the sig was generated for)",
        )
    if now > info.expires_at:
        raise UserSigError(
            ErrorCode.SIG_EXPIRED,
            f"user sig expired at {_iso(info.expires_at)}; " + _REMINT.replace("USER_ID", info.identifier),
        )
    expected = _hmac(secret_key, info.identifier, info.sdk_app_id, info.time, info.expire, b64_userbuf)
    if not hmac.compare_digest(expected, sig):
        raise UserSigError(
            ErrorCode.SIG_BAD_SIGNATURE,
            "user sig signature does not match: it was minted with another secret key "
            "or altered after minting; mint it with this app's secret key "
            f"(`ringline usersig {info.identifier}` or your TLSSigAPIv2 generator)",
        )
    return info


# -- internals ------------------------------------------------------------------------


def _for_rest(e: UserSigError, admin: str) -> str:
    """``e``'s message in the words of an admin REST request: the ``usersig`` query
    parameter, minted for the admin identifier and sent with the next request."""
    mint = f"for the admin identifier {admin!r} (`ringline usersig {admin}` or your TLSSigAPIv2 generator)"
    what = e.message.removeprefix("user sig ")
    made = what.split(":", 1)[0].removeprefix("was ")
    if e.code == ErrorCode.SIG_EMPTY:
        return f"the usersig query parameter is missing or empty: mint one {mint} and send it as usersig="
    if e.code == ErrorCode.SIG_EXPIRED:
        expired = e.message.removeprefix("user sig ").split(";", 1)[0]
        return (
            f"the usersig query parameter has {expired}: mint a new one {mint} and send it with the request"
        )
    if e.code == ErrorCode.SIG_APP_MISMATCH:
        made = made.replace("sdk_app_id", "sdkappid")
        return f"the usersig query parameter was {made}: mint one {mint} with this app's secret key"
    if e.code == ErrorCode.SIG_IDENTIFIER_MISMATCH:
        made = made.replace(f", not {admin!r}", f", not the admin identifier {admin!r}")
        return f"the usersig query parameter was {made}: mint one {mint}"
    return "the usersig query parameter " + what.replace("USER_ID", admin)


def _bad_param(message: str) -> NoReturn:
    raise LocalCallError(ErrorCode.PARAM_INVALID, message)


def _malformed(what: str) -> UserSigError:
    return UserSigError(
        ErrorCode.SIG_MALFORMED,
        f"user sig is malformed ({what}); pass the sig exactly as a TLSSigAPIv2 generator "
        "printed it, or mint a new one with `ringline usersig USER_ID`",
    )


def _show(value: object) -> str:
    """``repr`` cut short, so echoing attacker-controlled text stays small."""
    text = repr(value)
    return text if len(text) <= 48 else text[:45] + "..."


def _iso(ts: int) -> str:
    try:
        return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"Unix time {ts}"


def _hmac(
    secret_key: str,
    identifier: str,
    sdk_app_id: int,
    time: int,
    expire: int,
    b64_userbuf: str | None,
) -> bytes:
    text = f"TLS.identifier:{identifier}\nTLS.sdkappid:{sdk_app_id}\nTLS.time:{time}\nTLS.expire:{expire}\n"
    if b64_userbuf is not None:
        text += f"TLS.userbuf:{b64_userbuf}\n"
    # surrogatepass: a lone surrogate (legal in JSON text) must not escape as
    # UnicodeEncodeError; it simply yields a different MAC.
    return hmac.new(
        secret_key.encode("utf-8", "surrogatepass"),
        text.encode("utf-8", "surrogatepass"),
        hashlib.sha256,
    ).digest()


def _decode(user_sig: object) -> dict[str, object]:
    """Steps 1-2 up to the JSON object: b64x → zlib (bounded) → JSON."""
    if not isinstance(user_sig, str):
        raise _malformed(f"expected text, got {type(user_sig).__name__}")
    if len(user_sig) > MAX_USER_SIG_CHARS:
        raise _malformed(f"longer than {MAX_USER_SIG_CHARS} characters")
    text = user_sig.strip(_WHITESPACE)
    if not text:
        raise UserSigError(
            ErrorCode.SIG_EMPTY,
            "user sig is empty; pass the sig minted for this user "
            "(`ringline usersig USER_ID` or your TLSSigAPIv2 generator) to init()",
        )
    if _B64X_RE.fullmatch(text) is None:
        raise _malformed("characters outside the base64 alphabet A-Z a-z 0-9 * - _")
    try:
        raw = base64.b64decode(text.replace("*", "+").replace("-", "/").replace("_", "="), validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("bad base64 length or padding") from None

    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(raw, _MAX_JSON_BYTES)
    except zlib.error:
        raise _malformed("not zlib data") from None
    if inflater.unconsumed_tail:
        raise _malformed(f"inflates to more than {_MAX_JSON_BYTES} bytes")
    if not inflater.eof:
        raise _malformed("truncated zlib data")
    if inflater.unused_data:
        raise _malformed("trailing bytes after the zlib data")

    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _malformed("not a UTF-8 JSON document") from None
    if not isinstance(doc, dict):
        raise _malformed("the JSON is not an object")
    return doc


def _fields(doc: dict[str, object]) -> tuple[SigInfo, str | None, bytes]:
    """Step 2 (field types) and step 3 (version). Returns info, raw userbuf text, MAC."""
    if "TLS.ver" not in doc and "TLS.version" in doc:
        # TLSSigAPI v1 (ECDSA) has "TLS.version" and other field names: say so rather
        # than list missing fields.
        raise _wrong_version(doc["TLS.version"])
    ver = _field(doc, "TLS.ver", str)
    identifier = _field(doc, "TLS.identifier", str)
    sdk_app_id = _int_field(doc, "TLS.sdkappid", _UINT32_MAX)
    time = _int_field(doc, "TLS.time", _INT64_MAX)
    expire = _int_field(doc, "TLS.expire", _INT64_MAX)
    sig = _b64_field(doc, "TLS.sig")
    b64_userbuf: str | None = None
    userbuf: bytes | None = None
    if "TLS.userbuf" in doc:
        b64_userbuf = _field(doc, "TLS.userbuf", str)
        userbuf = _b64_field(doc, "TLS.userbuf")
    if ver != _VERSION:
        raise _wrong_version(ver)
    info = SigInfo(identifier=identifier, sdk_app_id=sdk_app_id, time=time, expire=expire, userbuf=userbuf)
    return info, b64_userbuf, sig


def _wrong_version(ver: object) -> UserSigError:
    return UserSigError(
        ErrorCode.SIG_VERSION,
        f"user sig version {_show(ver)} is not supported, only TLSSigAPIv2 ({_VERSION!r}); "
        "mint it with a TLSSigAPIv2 generator (PyPI tls-sig-api-v2, "
        "`ringline usersig USER_ID`), not the old ECDSA TLSSigAPI",
    )


def _field(doc: dict[str, object], name: str, kind: type[_T]) -> _T:
    if name not in doc:
        raise _malformed(f"field {name} is missing")
    value = doc[name]
    if not isinstance(value, kind):
        raise _malformed(f"field {name} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _int_field(doc: dict[str, object], name: str, maximum: int) -> int:
    if name in doc and isinstance(doc[name], bool):
        raise _malformed(f"field {name} must be int, got bool")
    value = _field(doc, name, int)
    if not 0 <= value <= maximum:
        raise _malformed(f"field {name} must be in 0..{maximum}")
    return value


def _b64_field(doc: dict[str, object], name: str) -> bytes:
    text = _field(doc, name, str)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(f"field {name} is not standard base64") from None
