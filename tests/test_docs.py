"""The documentation: a small README, a results page that matches the benchmark JSON, and no dead relative links."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_BYTES = 10240

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
    assert page.read_text(encoding="utf-8") == module.render(), "docs/results.md differs from benchmarks/results/*.json: run python benchmarks/results_page.py"


def test_generated_blocks_are_current():
    """Tables generated into hand-written pages (docs/pipelines.md and docs/transformers.md carry the coverage table)."""
    module = _results_page_module()
    for page, key, render_block in module.EMBEDS:
        text = page.read_text(encoding="utf-8")
        assert f"<!-- generated:{key} -->" in text, f"{page.name} lost its generated {key} block"
        assert module.embedded(text, key, render_block) == text, f"{page.name}'s {key} block is stale: run python benchmarks/results_page.py"


def test_every_result_json_has_a_page(tmp_path, monkeypatch):
    """Every benchmarks/results/*.json and reproduced/*.json is claimed by exactly one page module in benchmarks/pages/: a file
    without one (or with two) is reported and stops the page, instead of being published under a placeholder."""
    module = _results_page_module()
    results = ROOT / "benchmarks" / "results"
    names = sorted(p.relative_to(results).as_posix() for p in [*results.glob("*.json"), *results.glob("*/*.json")])
    assert names and module.unclaimed(names) == {}, f"result files without exactly one page in benchmarks/pages/: {module.unclaimed(names)}"
    # the check can fail: a new benchmark's file and a rerun of a new kind are reported, and render() refuses them
    fakes = ["no_such_benchmark.json", "reproduced/no_such_rerun.json"]
    assert module.unclaimed([*names, *fakes]) == {n: [] for n in fakes}
    (tmp_path / "no_such_benchmark.json").write_text("{}")
    with pytest.raises(ValueError, match="no_such_benchmark.json"):
        module.render(tmp_path)
    # ... and so is a file two pages claim
    first = module.SECTIONS[0]
    monkeypatch.setattr(module, "SECTIONS", [*module.SECTIONS, first])
    assert module.unclaimed(names) == {n: [first.key, first.key] for n in names if first.owns(n)} != {}


def test_growing_families_need_no_new_page(tmp_path):
    """A second teacher's step_transfer file and new search-frontier methods render without touching the pages: the
    step_transfer page owns step_transfer*.json, heading each by its model; the frontier tables list every summary method
    (the README's headline counts them and shows the reference, the default's and the best or closest)."""
    module = _results_page_module()
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results)
    transfer = json.loads((results / "step_transfer.json").read_text())
    transfer.update(model="builtin:digits-dit", sampler="flow-euler", solver=None)  # step_transfer.py --solver '' writes None
    (results / "step_transfer_dit.json").write_text(json.dumps(transfer))
    frontier = json.loads((results / "search_frontier_unet.json").read_text())
    frontier["summary"]["paired-8-t60"] = frontier["summary"]["paired-4"]
    (results / "search_frontier_unet.json").write_text(json.dumps(frontier))
    page = module.render(results)
    assert '<a id="step_transfer_dit"></a>' in page
    assert "### `builtin:digits-dit`, teacher `flow-euler` (`step_transfer_dit.json`)" in page
    assert "### `builtin:digits`, teacher `ddim` (`step_transfer.json`)" in page
    assert "candidates under the sampler's own steps" in page
    assert "| `paired-8-t60` |" in page
    for page_path, key, render_block in module.EMBEDS:
        if key == "search_frontier_unet":
            block = module.embedded(page_path.read_text(encoding="utf-8"), key, render_block, results)
            assert ("`paired-8-t60`" in block) if page_path.name == "search.md" else (f"({len(frontier['summary'])} methods measured" in block)


def test_relative_links_resolve():
    dead = []
    for page in _pages():
        for target in LINK.findall(_prose(page.read_text(encoding="utf-8"))):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
                continue
            path_part, _, fragment = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            if not dest.exists():
                dead.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
                dead.append(f"{page.relative_to(ROOT)}: {target} (no such section)")
    assert not dead, "dead links:\n" + "\n".join(dead)


def test_no_issue_tracker_phrasing():
    for page in _pages():
        assert "the issue names" not in page.read_text(encoding="utf-8").lower(), f"{page.relative_to(ROOT)} says 'the issue names'"


@pytest.mark.slow
def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    """The front door's example is code that works, not a sketch."""
    block = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert block, "README.md has no python example"
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), scope)  # noqa: S102 - our own README
    assert tuple(scope["images"].shape) == (64, 1, 16, 16)
    for sketch in re.findall(r"```py\n(.*?)```", README.read_text(encoding="utf-8"), re.S):  # the pipeline sketch needs a user's folder
        compile(sketch, "README.md", "exec")  # but is valid Python
