"""The repository is self-contained: nothing cites a file outside it, and the docs' links hold.

* No tracked file names the old out-of-tree spec or a folder beside the repository
  (its "shared" folder): a user of the repository could not open it. The reference is
  docs/spec.md.
* Every relative Markdown link in README.md, DEVELOPERS.md, CHANGELOG.md and docs/
  points to a file of the repository, and its ``#anchor`` to a heading of that file
  (GitHub's heading ids).
* Every citation ``<page>.md §N`` (``docs/spec.md §5 row 8``, ``docs/media.md §2``) in any
  tracked file names a section (and a scenario row) that exists.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Directories that are never part of the repository's content.
_UNTRACKED_DIRS = {
    ".git",
    ".venv",
    "node_modules",
    "__pycache__",
    "test-artifacts",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "build",
    "dist",
}

# Spelled in pieces so this file does not match itself.
_OUTSIDE = re.compile(r"\bCALLS" + r"\.md\b|\.\./shared\b|\bshared/(?:spec|seeds|STYLE)")

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^)]*[\"'])?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_HTML_ID = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
_SEC = r"§[0-9]+(?:\.[0-9]+)*"
_CITE = re.compile(
    r"([A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md) "
    r"(" + _SEC + r"(?:\s*[-–]\s*" + _SEC + r")?)"
    r"(?: rows? ([A-Z]?[0-9]+))?"
)


def tracked_files() -> list[Path]:
    """The repository's files: ``git ls-files`` in a checkout, else a walk of the tree."""
    if (ROOT / ".git").exists():
        try:
            out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            out = b""
        names = [n for n in out.decode().split("\0") if n]
        if names:
            return [ROOT / n for n in names if (ROOT / n).is_file()]
    found: list[Path] = []
    for d, dirs, files in os.walk(ROOT):
        dirs[:] = [x for x in dirs if x not in _UNTRACKED_DIRS and not x.endswith(".egg-info")]
        found.extend(Path(d) / f for f in files)
    return found


def _text(p: Path) -> str | None:
    data = p.read_bytes()
    if b"\0" in data[:8192]:
        return None  # binary
    return data.decode("utf-8", errors="replace")


def _markdown_files() -> list[Path]:
    top = [ROOT / n for n in ("README.md", "DEVELOPERS.md", "CHANGELOG.md")]
    return [p for p in top if p.exists()] + sorted((ROOT / "docs").rglob("*.md"))


def _strip_code(md: str) -> str:
    return _CODE_SPAN.sub("", _FENCE.sub("", md))


def slug(heading: str) -> str:
    """GitHub's id for a heading: link text kept, markup and punctuation dropped,
    lower case, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(p: Path) -> set[str]:
    """Every ``#id`` a link into ``p`` may use (duplicate headings get ``-1``, ``-2`` …)."""
    md = _FENCE.sub("", p.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    ids: set[str] = set(_HTML_ID.findall(md))
    for _, title in _HEADING.findall(md):
        s = slug(title)
        n = seen.get(s, 0)
        seen[s] = n + 1
        ids.add(s if n == 0 else f"{s}-{n}")
    return ids


def test_nothing_cites_a_file_outside_the_repository() -> None:
    files = tracked_files()
    assert len(files) > 50, f"found only {len(files)} files under {ROOT}"
    bad = []
    for p in files:
        text = _text(p)
        if text is None:
            continue
        for no, line in enumerate(text.splitlines(), 1):
            if _OUTSIDE.search(line):
                bad.append(f"{p.relative_to(ROOT)}:{no}: {line.strip()[:120]}")
    assert not bad, (
        "these lines cite a file outside the repository, which its users cannot open; "
        "cite docs/spec.md §N instead:\n" + "\n".join(bad)
    )


def test_relative_markdown_links_resolve() -> None:
    bad = []
    checked = 0
    for page in _markdown_files():
        md = _strip_code(page.read_text(encoding="utf-8"))
        targets = _LINK.findall(md) + _REF_DEF.findall(md)
        for target in targets:
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, mailto: …
                continue
            checked += 1
            where = f"{page.relative_to(ROOT)}: ({target})"
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            try:
                dest.relative_to(ROOT)
            except ValueError:
                bad.append(f"{where} leaves the repository")
                continue
            if not dest.exists():
                bad.append(f"{where} names a file that does not exist")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{where}: {dest.relative_to(ROOT)} has no heading with id #{anchor}")
    assert checked > 50, f"only {checked} relative links found: is the link pattern broken?"
    assert not bad, "broken links:\n" + "\n".join(bad)


def _sections(p: Path) -> set[str]:
    """Section numbers of a page: "## 5. Scenarios" -> "5", "### 6.4 Multi-device" -> "6.4"."""
    md = _FENCE.sub("", p.read_text(encoding="utf-8"))
    return {m.group(1) for m in re.finditer(r"^#{1,6}\s+([0-9]+(?:\.[0-9]+)*)\.?\s", md, re.M)}


def _scenario_rows(p: Path) -> set[str]:
    """Row names of the scenario table(s) of a page: the first cell, e.g. "8" or "G3"."""
    md = p.read_text(encoding="utf-8")
    return set(re.findall(r"^\|\s*([A-Z]?[0-9]+)\s*\|", md, re.M))


def _resolve_page(citing: Path, name: str) -> Path | None:
    for base in (citing.parent, ROOT, ROOT / "docs"):
        p = (base / name).resolve()
        if p.is_file() and p.is_relative_to(ROOT):
            return p
    return None


def test_section_citations_name_existing_sections() -> None:
    bad = []
    checked = 0
    for p in tracked_files():
        text = _text(p)
        if text is None or p.suffix not in {".py", ".js", ".ts", ".md", ".html", ".toml", ".sh", ""}:
            continue
        for m in _CITE.finditer(text):
            name, secs, row = m.group(1), m.group(2), m.group(3)
            no = text.count("\n", 0, m.start()) + 1
            where = f"{p.relative_to(ROOT)}:{no}: {m.group(0)!r}"
            page = _resolve_page(p, name)
            if page is None:
                bad.append(f"{where}: no such page in the repository")
                continue
            checked += 1
            have = _sections(page)
            for sec in re.findall(r"§([0-9]+(?:\.[0-9]+)*)", secs):
                if sec not in have:
                    bad.append(f"{where}: {page.relative_to(ROOT)} has no section {sec}")
            if row and row not in _scenario_rows(page):
                bad.append(f"{where}: {page.relative_to(ROOT)} has no table row {row}")
    assert checked > 20, f"only {checked} section citations found: is the pattern broken?"
    assert not bad, "citations of sections that do not exist:\n" + "\n".join(bad)


def test_the_reference_is_linked_from_readme_and_concepts() -> None:
    assert "](docs/spec.md" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](spec.md" in (ROOT / "docs" / "concepts.md").read_text(encoding="utf-8")
