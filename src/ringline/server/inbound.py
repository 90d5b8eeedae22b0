"""Checks on every JSON document that arrives from outside: WebSocket frames and REST bodies.

Both edges parse with :func:`parse_json`, so every value a client sends passes the same
rules before any of it reaches the switchboard, the record store or another user's
socket (docs/protocol.md "Limits on values", docs/rest.md "Error codes"):

* text is Unicode that UTF-8 can carry: no lone UTF-16 surrogate (``"\\ud800"``, which a
  JSON parser accepts), and no NUL character (``"\\u0000"``, which PostgreSQL cannot
  store); object keys included;
* numbers are finite (no ``NaN`` / ``Infinity`` constants, no ``1e400``) and integers
  fit in 64 bits (``-2**63 .. 2**63-1``, what the store keeps);
* containers nest at most :data:`MAX_DEPTH` levels. The depth is measured on the raw
  text *before* parsing, so a 2,000-level document never reaches the recursive parser.

A refusal is an :class:`InputError` naming the field (``params.user_data``,
``user_ids[2]``) and saying what to send instead; the caller turns it into its error
answer (-1202 / -1410 on the WebSocket, 90005 / 90001 on REST).

It also says who sent a request: :func:`peer_address` (a cluster node relaying a client's
request names the client).
"""

from __future__ import annotations

import hmac
import json
import math
import re
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_DEPTH",
    "PEER_HEADER",
    "InputError",
    "check_value",
    "parse_json",
    "peer_address",
    "request_id",
    "safe_utf8",
]

#: Deepest nesting of arrays and objects accepted (the frame or body itself is level 1).
MAX_DEPTH: Final = 32
#: The range of every integer accepted: what a 64-bit store column holds.
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1

_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_TOKEN_B = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_ID_AFTER = re.compile(r"\s*:\s*(-?\d{1,19})\s*[,}]")
_ID_AFTER_B = re.compile(rb"\s*:\s*(-?\d{1,19})\s*[,}]")
_LEADING_ID = re.compile(r'\s*\{\s*"id"\s*:\s*(-?\d{1,19})\s*[,}]')
_LEADING_ID_B = re.compile(rb'\s*\{\s*"id"\s*:\s*(-?\d{1,19})\s*[,}]')


class InputError(ValueError):
    """A document refused by :func:`parse_json` / :func:`check_value`.

    ``field``: where (``params.user_data``, ``user_ids[0]``), ``""`` for the document
    itself; ``problem``: what is wrong and what to send instead. ``structural`` is True
    when the document as a whole is unusable (not JSON, nested too deep): the WebSocket
    answers it as a malformed frame (-1410), REST as a bad body (90001); a value
    problem is a bad parameter (-1202, 90005). ``request_id``: the top-level integer
    ``"id"`` of the document, if one could be read (also from a frame refused unparsed),
    so that the refusal can answer that request.
    """

    def __init__(
        self, field: str, problem: str, *, structural: bool = False, request_id: int | None = None
    ) -> None:
        self.field = field
        self.problem = problem
        self.structural = structural
        self.request_id = request_id
        super().__init__(self.message())

    def message(self, *, quote: str = "'") -> str:
        """The whole message: ``field 'x' <problem>`` (``quote`` around the field name)."""
        if not self.field:
            return self.problem
        return f"field {quote}{self.field}{quote} {self.problem}"


def parse_json(text: str | bytes, *, what: str = "frame") -> Any:
    """``text`` parsed as JSON and checked with :func:`check_value`.

    Raises :class:`InputError` (never ``RecursionError``): ``structural`` for text that
    is not JSON or nests deeper than :data:`MAX_DEPTH`, otherwise naming the field whose
    value is refused. ``what`` names the document in messages ("frame", "body"). The
    error's ``request_id`` is the document's top-level integer ``"id"``, if it has a
    usable one.
    """
    _check_depth(text, what)
    try:
        value = json.loads(text)
    except RecursionError:  # pragma: no cover - _check_depth stops such documents first
        raise InputError("", _too_deep(what), structural=True) from None
    except ValueError as e:
        raise InputError(
            "",
            f"{what} is not valid JSON ({_short_reason(e)}); send one JSON object",
            structural=True,
            request_id=request_id(text),
        ) from None
    try:
        check_value(value)
    except InputError as e:
        if isinstance(value, dict) and e.field != "id":
            rid = value.get("id")
            if type(rid) is int and INT_MIN <= rid <= INT_MAX:
                e.request_id = rid
        raise
    return value


def check_value(value: Any, *, root: str = "") -> None:
    """Raise :class:`InputError` if ``value`` (parsed JSON) holds text that UTF-8 cannot
    carry or a store cannot keep, a number that is not finite, an integer outside 64
    bits, or nesting deeper than :data:`MAX_DEPTH`. Iterative: no recursion however
    deep ``value`` is. ``root`` prefixes the field names in messages."""
    # (value, path parts, depth of the container holding it)
    stack: list[tuple[Any, tuple[str | int, ...], int]] = [(value, (root,) if root else (), 0)]
    while stack:
        v, path, depth = stack.pop()
        t = type(v)
        if t is str:
            problem = _text_problem(v)
            if problem is not None:
                raise InputError(_path(path), problem)
        elif t is int:
            if not INT_MIN <= v <= INT_MAX:
                raise InputError(
                    _path(path),
                    f"is an integer of {len(str(abs(v)))} digits, outside the 64-bit range"
                    f" {INT_MIN}..{INT_MAX}; send a number in the field's documented range",
                )
        elif t is float:
            if not math.isfinite(v):
                raise InputError(
                    _path(path),
                    f"is {_float_name(v)}, which is not a JSON number (NaN, Infinity, or a literal too large"
                    " for a double such as 1e400); send a finite number",
                )
        elif t is dict or t is list:
            if depth + 1 > MAX_DEPTH:
                raise InputError(
                    _path(path),
                    f"nests arrays/objects deeper than {MAX_DEPTH} levels; flatten it",
                    structural=not path,
                )
            if t is dict:
                for key, item in v.items():
                    problem = _text_problem(key)
                    if problem is not None:
                        raise InputError(_path((*path, key)), "has a name that " + problem)
                    stack.append((item, (*path, key), depth + 1))
            else:
                for i, item in enumerate(v):
                    stack.append((item, (*path, i), depth + 1))
        # bool, None: always fine


def safe_utf8(text: str) -> str:
    """``text`` unchanged if UTF-8 can encode it, else with each unencodable character
    written as a JSON-style ``\\uXXXX`` escape. For the last line of defence before a
    socket or a log line: after :func:`parse_json`, it never changes anything."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


# --------------------------------------------------------------------------- helpers


def _text_problem(s: str) -> str | None:
    """Why ``s`` cannot be kept or sent, or None."""
    if s.isascii():
        if "\x00" in s:
            return (
                f"contains a NUL character (\\u0000) at character {s.index(chr(0))}, which the"
                " record store cannot keep; remove it"
            )
        return None
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = s[e.start]
        return (
            f"contains a lone UTF-16 surrogate (\\u{ord(bad):04x}) at character {e.start}, which"
            " is not Unicode text and cannot be stored or sent; send valid UTF-8 text (a"
            " character outside the Basic Multilingual Plane is a *pair* of escapes, such as"
            " \\ud83d\\ude00)"
        )
    if "\x00" in s:
        return (
            f"contains a NUL character (\\u0000) at character {s.index(chr(0))}, which the"
            " record store cannot keep; remove it"
        )
    return None


def _key_text(key: str) -> str:
    text = json.dumps(key)[1:-1]  # ASCII, control characters and surrogates escaped
    return text if len(text) <= 40 else text[:37] + "..."


def _float_name(v: float) -> str:
    return "NaN" if math.isnan(v) else "Infinity" if v > 0 else "-Infinity"


def _path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            name = _key_text(p)
            out = f"{out}.{name}" if out else name
    return out


def _too_deep(what: str) -> str:
    return f"{what} nests arrays/objects deeper than {MAX_DEPTH} levels (the limit); flatten it"


def _short_reason(e: ValueError) -> str:
    text = str(e)
    return text if len(text) <= 120 else text[:117] + "..."


def _check_depth(text: str | bytes, what: str) -> None:
    """Raise if ``text`` nests deeper than :data:`MAX_DEPTH`, reading it without parsing
    (brackets inside strings do not count)."""
    tokens: Any
    opens: Any
    if isinstance(text, str):
        if text.count("[") + text.count("{") <= MAX_DEPTH:
            return
        tokens, opens = _TOKEN, ("[", "{")
    else:
        if text.count(b"[") + text.count(b"{") <= MAX_DEPTH:
            return
        tokens, opens = _TOKEN_B, (b"[", b"{")
    depth = 0
    for m in tokens.finditer(text):
        tok = m.group()
        if tok in opens:
            depth += 1
            if depth > MAX_DEPTH:
                raise InputError("", _too_deep(what), structural=True, request_id=request_id(text))
        elif len(tok) == 1:
            depth -= 1


def request_id(text: str | bytes, *, read_up_to: int | None = None) -> int | None:
    """The integer value (64 bits) of the top-level ``"id"`` key of ``text``, found
    without parsing it (``text`` may not even be JSON: best effort, for answering a
    refused request), or None. The one reader of a refused document's request id.

    ``read_up_to``: a document longer than this many characters is not read through:
    only an ``"id"`` that is its first key is found (both SDKs send it first), so that a
    frame refused unread for its size costs nothing more to answer.
    """
    if read_up_to is not None and len(text) > read_up_to:
        head = text[:64]
        found = _LEADING_ID_B.match(head) if isinstance(head, bytes) else _LEADING_ID.match(head)
        return _in_range(int(found.group(1))) if found is not None else None
    if isinstance(text, bytes):
        key: Any = b'"id"'
        tokens: Any = _TOKEN_B
        after: Any = _ID_AFTER_B
        opens: Any = (b"[", b"{")
    else:
        key, tokens, after, opens = '"id"', _TOKEN, _ID_AFTER, ("[", "{")
    depth = 0
    for m in tokens.finditer(text):
        tok = m.group()
        if tok in opens:
            depth += 1
        elif len(tok) == 1:
            depth -= 1
        elif depth == 1 and tok == key:
            found = after.match(text, m.end())
            if found is not None:
                return _in_range(int(found.group(1)))
    return None


def _in_range(rid: int) -> int | None:
    return rid if INT_MIN <= rid <= INT_MAX else None


#: The header by which a cluster node relaying a client's WebSocket or REST request
#: proves that it is a node of the same app (its value: the cluster's peer token,
#: derived from the app's secret key; docs/cluster.md).
PEER_HEADER: Final = "X-Ringline-Peer"


def peer_address(request: web.Request, peer_token: str) -> str:
    """The address of whoever sent ``request`` (``""`` if unknown): the remote end, or,
    when another node of the cluster relays it (``peer_token`` set and proven in
    :data:`PEER_HEADER`), the first address of its ``X-Forwarded-For``."""
    addr = request.remote or ""
    if peer_token and hmac.compare_digest(request.headers.get(PEER_HEADER, "").encode(), peer_token.encode()):
        addr = request.headers.get("X-Forwarded-For", "").split(",")[0].strip() or addr
    return addr
