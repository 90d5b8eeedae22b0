"""contrib/grafana/ringline.json is a valid dashboard whose every query names metrics
that Ringline exports, and docs/operations.md lists every exported metric."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ringline.server.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "contrib" / "grafana" / "ringline.json"
DOC = ROOT / "docs" / "operations.md"
# A metric name in PromQL: starts with ringline_ or process_ (label names are lower
# case too, but never start with these prefixes).
NAME = re.compile(r"\b((?:ringline|process)_[a-z0-9_]+)\b")


def exported() -> dict[str, set[str]]:
    """Each metric family Ringline exports -> the sample names it can have."""
    out: dict[str, set[str]] = {}
    for family in Metrics("n").registry.collect():
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
        }.get(family.type, ("",))
        out[family.name] = {family.name + s for s in suffixes}
    return out


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dash = json.loads(DASHBOARD.read_text())
    samples = set().union(*exported().values())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 15
    used = {n for e in exprs for n in NAME.findall(e)}
    assert used, exprs
    unknown = sorted(used - samples)
    assert not unknown, f"the dashboard queries metrics Ringline does not export: {unknown}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    assert dash["uid"] and dash["title"]


def test_the_dashboard_covers_every_ringline_metric() -> None:
    dash = DASHBOARD.read_text()
    missing = [f for f in exported() if f.startswith("ringline_") and f not in dash]
    assert not missing, f"metrics without a panel: {missing}"


def test_docs_list_every_ringline_metric_by_its_exposed_name() -> None:
    doc = DOC.read_text()
    families = exported()
    missing = [
        f
        for f, samples in families.items()
        if f.startswith("ringline_") and not any(s in doc for s in samples | {f})
    ]
    assert not missing, f"docs/operations.md does not list: {missing}"
    named = set(NAME.findall(doc))
    samples = set().union(*families.values())
    assert not sorted(n for n in named if n not in samples and n not in families), "docs name unknown metrics"
