"""Compact JSON for frames, snapshots and callback bodies: ``orjson`` when installed.

``orjson`` (a default dependency) encodes several times faster than the standard
library; every frame the server sends goes through :func:`dumps`. The output is the
same document: compact separators, non-ASCII written as UTF-8, keys in insertion order.
When ``orjson`` is missing, or refuses a value the standard library accepts (an integer
past 64 bits, a lone surrogate), the standard library writes it instead, so callers see
one behaviour whichever module did the work. (A NaN, which no JSON reader accepts,
comes out as ``null``.)

Parsing stays with the standard library: ``orjson`` reads an integer past 64 bits as a
float, and the server must see such a number to refuse it by name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

__all__ = ["FAST", "dumps"]

_std_dumps: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency; kept for odd installs
    _orjson = None  # type: ignore[assignment]

#: True when :mod:`orjson` does the work.
FAST: Final = _orjson is not None


def _fast_dumps(obj: Any) -> str:
    try:
        return _orjson.dumps(obj, option=_orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return _std_dumps(obj)


#: ``obj`` as compact JSON text; raises ``TypeError`` for values JSON cannot carry.
dumps: Final[Callable[[Any], str]] = _fast_dumps if FAST else _std_dumps
