"""The documentation: a small README, a results page that matches the benchmark JSON, and no dead relative links."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_BYTES = 10240

# Pages linked before they exist because another change owns them; drop an entry once its page is in the tree.
PENDING = {DOCS / "architecture.md"}

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
HTML_ID = re.compile(r"<a\s+id=\"([^\"]+)\"")


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _prose(text: str) -> str:
    return INLINE_CODE.sub("", FENCE.sub("", text))


def _anchors(page: Path) -> set[str]:
    """GitHub's heading slugs of a Markdown page, plus explicit <a id="..."> anchors."""
    text = page.read_text(encoding="utf-8")
    slugs = set(HTML_ID.findall(text))
    for title in HEADING.findall(FENCE.sub("", text)):
        title = re.sub(r"[`*_]{1,2}(?=\S)|(?<=\S)[`*_]{1,2}", "", title)  # markup around words, not inside names
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        slugs.add(slug)
    return slugs


def _results_page_module():
    path = ROOT / "benchmarks" / "results_page.py"
    spec = importlib.util.spec_from_file_location("flexdiff_docs_results_page", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_readme_is_a_small_front_door():
    size = README.stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes, over {README_MAX_BYTES}: move detail to docs/"


def test_results_page_is_current():
    module = _results_page_module()
    page = DOCS / "results.md"
    assert page.exists(), "docs/results.md is missing: run python benchmarks/results_page.py"
    assert page.read_text(encoding="utf-8") == module.render(), (
        "docs/results.md differs from benchmarks/results/*.json: run python benchmarks/results_page.py")


def test_relative_links_resolve():
    dead = []
    for page in _pages():
        for target in LINK.findall(_prose(page.read_text(encoding="utf-8"))):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
                continue
            path_part, _, fragment = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            if dest in PENDING:
                continue
            if not dest.exists():
                dead.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
                dead.append(f"{page.relative_to(ROOT)}: {target} (no such section)")
    assert not dead, "dead links:\n" + "\n".join(dead)


def test_no_issue_tracker_phrasing():
    for page in _pages():
        assert "the issue names" not in page.read_text(encoding="utf-8").lower(), f"{page.relative_to(ROOT)} says 'the issue names'"
