"""Server logs: ``--log-format console`` (default, one readable line per event) or
``json`` (one JSON object per line, for a log pipeline).

Ringline's modules log with the standard :mod:`logging` module and pass what an event
is about as ``extra`` fields: ``call_id``, ``user_id``, ``device_id``, ``op``, ``code``,
``remote`` … (:data:`FIELDS`). The JSON format writes each as its own key, with
``ts``, ``level``, ``logger``, ``event`` (the message) and ``node_id``; the console
format appends them as ``key=value``.

No secret is ever logged: the code never passes sigs, keys, tokens or webhook secrets
to a log call, and :class:`Redact` scrubs anything that looks like one from every
record all the same (a user sig, a ``whsec_`` secret, ``usersig=``/``token=``/
``secret=`` query parameters, ``Authorization`` values) before any handler sees it.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
import sys
from typing import Any, TextIO

__all__ = [
    "FIELDS",
    "LOG_FORMATS",
    "ConsoleFormatter",
    "JsonFormatter",
    "Redact",
    "configure_logging",
    "set_node_id",
]

#: The accepted ``--log-format`` values.
LOG_FORMATS = ("console", "json")

#: ``extra`` fields written as their own keys, in this order.
FIELDS = (
    "call_id",
    "user_id",
    "device_id",
    "node_id",
    "op",
    "code",
    "close_code",
    "cause",
    "remote",
    "command",
    "status",
    "event_id",
    "url",
)

_REDACTED = "[redacted]"
_PATTERNS = (
    # query parameters and key=value pairs carrying credentials
    re.compile(
        r"(?i)\b(usersig|user_sig|sig|token|secret|secret_key|password|credential|sign)"
        r"(\s*[=:]\s*\"?)([^\s\"&,;]+)"
    ),
    # JSON members carrying credentials
    re.compile(
        r"(?i)(\"(?:usersig|user_sig|userSig|sig|token|secret|secret_key|password|credential)\"\s*:\s*\")([^\"]*)(\")"
    ),
    re.compile(r"whsec_[A-Za-z0-9+/=]+"),
    re.compile(r"(?i)(authorization\s*[:=]\s*)(\S+(?:\s+\S+)?)"),
    # a TLS-Sig-API-v2 user sig: long base64url with Ringline's '*'/'-'/'_' alphabet
    re.compile(r"eJ[A-Za-z0-9*_\-]{40,}"),
)


def redact(text: str) -> str:
    """``text`` with anything that looks like a credential replaced by ``[redacted]``."""
    t = _PATTERNS[0].sub(lambda m: m.group(1) + m.group(2) + _REDACTED, text)
    t = _PATTERNS[1].sub(lambda m: m.group(1) + _REDACTED + m.group(3), t)
    t = _PATTERNS[2].sub(_REDACTED, t)
    t = _PATTERNS[3].sub(lambda m: m.group(1) + _REDACTED, t)
    return _PATTERNS[4].sub(_REDACTED, t)


class Redact(logging.Filter):
    """Scrubs credentials from every record (message, arguments, extra fields and the
    exception text). Attach it to the handlers: it runs for every logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        for key in FIELDS:
            value = getattr(record, key, None)
            if isinstance(value, str):
                setattr(record, key, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``,
    ``event``, the :data:`FIELDS` present, and ``exc`` for an exception."""

    def __init__(self, node_id: str = "") -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        if self.node_id:
            out["node_id"] = self.node_id
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


class ConsoleFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value …`` (the :data:`FIELDS` present)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(
            f"{key}={getattr(record, key)}" for key in FIELDS if getattr(record, key, None) is not None
        )
        if not extra:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the line
        return f"{head} {extra}{sep}{tail}"


def configure_logging(
    level: str = "INFO", fmt: str = "console", *, node_id: str = "", stream: TextIO | None = None
) -> None:
    """Send every log record of this process to ``stream`` (stderr) in format ``fmt``
    (one of :data:`LOG_FORMATS`) from ``level`` up, credentials scrubbed. Replaces
    handlers set before (call it once at start-up)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(node_id) if fmt == "json" else ConsoleFormatter())
    handler.addFilter(Redact())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def set_node_id(node_id: str) -> None:
    """Name the node in every JSON log record written from now on. ``ringline serve``
    calls it once its port is bound when ``--node-id`` was not given: the default,
    ``<host name>:<port>``, is known only then (with ``--port 0``, the port picked)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, JsonFormatter):
            handler.formatter.node_id = node_id
