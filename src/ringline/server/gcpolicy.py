"""The garbage collector's settings in a serving process (the server, a callback worker).

CPython's cycle collector scans every tracked object of the generations it collects.
Its full collections (generation 2) scan the whole heap: in a busy server that is
100,000 objects or more, 60-110 ms of a stopped event loop each on a 2-core machine,
every few seconds under load, and they find nothing (a server's state is freed by
reference counting; it makes few cycles). That was the largest part of the tail of
invite→ring latency (docs/benchmarks.md).

:func:`settle` is called once a process has started (everything imported, the store's
state loaded): it moves every object alive then out of the collector's sight
(:func:`gc.freeze`: they are still freed by reference counting, only never scanned),
and lets the young generations run as before while a full collection waits for
:data:`FULL_EVERY` collections of generation 1 instead of 10 (cycles are still
collected, minutes later under load rather than seconds).
"""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["FULL_EVERY", "settle"]

#: Collections of generation 1 between two full collections (CPython's default: 10).
FULL_EVERY: Final = 1000


def settle() -> None:
    """Freeze what the process made while starting and make full collections rare.
    Call once, when the process is ready to serve; it does not return anything to wait
    for and may be called again (it freezes what is alive then too)."""
    gc.collect()  # what starting left behind goes now, not into the frozen set
    gc.freeze()
    young, middle, _full = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_EVERY)
