"""A serving process's garbage collector: what was alive when it started is frozen (never
scanned again), full collections are rare, and cycles made later are still collected."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from ringline.server import gcpolicy

_SCRIPT = textwrap.dedent(
    """
    import gc, json, weakref
    from ringline.server import gcpolicy

    before = gc.get_threshold()
    startup = [{"i": i} for i in range(1000)]  # alive at start-up: frozen
    gcpolicy.settle()
    frozen = gc.get_freeze_count()
    after = gc.get_threshold()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle made while serving
    ref = weakref.ref(a)
    del a, b
    gc.collect()
    print(json.dumps({"before": before, "after": after, "frozen": frozen,
                      "cycle_collected": ref() is None, "startup": len(startup)}))
    """
)


def test_settle_freezes_the_start_up_and_makes_full_collections_rare() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    r = json.loads(out)
    assert r["frozen"] >= 1000  # the start-up objects, and everything imported
    assert r["after"][:2] == r["before"][:2]  # the young generations as before
    assert r["after"][2] == gcpolicy.FULL_EVERY > r["before"][2]
    assert r["cycle_collected"] is True  # cycles made later are still collected
