"""The HTML report: a small real search run of the built-in model, rendered, parsed, and opened in headless Chromium."""

from __future__ import annotations

import base64
import copy
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from flexdiff.cli import app
from flexdiff.errors import FlexdiffError
from flexdiff.report import plots, write_report

pytestmark = pytest.mark.slow  # end-to-end runs: `pytest -m "not slow"` leaves them out

FLEXDIFF = str(Path(sys.executable).with_name("flexdiff"))
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
SECTIONS = ("pareto", "grids", "strips", "progress", "compress", "provenance")
runner = CliRunner()


class _Page(HTMLParser):
    """Every <img> source and every section id of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[tuple[str, str]] = []
        self.sections: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.images.append((a.get("alt") or "", a.get("src") or ""))
        if tag == "section":
            self.sections.append(a.get("id") or "")


def parse(path: Path) -> tuple[str, _Page]:
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    return text, page


def decoded(src: str) -> Image.Image:
    assert src.startswith("data:image/png;base64,"), src[:40]
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    image.load()
    return image


def non_blank(image: Image.Image) -> bool:
    """More than one colour, and not a near-uniform page: at least a few distinct colours in a sample."""
    rgb = image.convert("RGB")
    colours = rgb.getcolors(maxcolors=1 << 20)
    return colours is None or len(colours) > 8


def absent_notes(text: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<p class="absent">(.*?)</p>', text, re.S)]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models: one thread is as fast, and two threads on a busy 2-core machine were measured 17x slower (OpenMP waits)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def search_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real search of the built-in digits model, run as a user runs it (a subprocess), without the report."""
    out = tmp_path_factory.mktemp("report") / "run"
    args = [
        "search",
        "--model",
        "builtin:digits",
        "--n",
        "16",
        "--trials",
        "3",
        "--validate-n",
        "16",
        "--validate-top",
        "1",
        "--baseline-branches",
        "0",
        "--segments",
        "5,10",
        "--steps",
        "10",
        "--speedup",
        "2",
        "--seed",
        "0",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--no-report",
    ]
    proc = subprocess.run([FLEXDIFF, *args], env=ENV, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (out / "report.html").exists(), "--no-report must skip the report"
    return out


@pytest.fixture(scope="module")
def real_report(search_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("rendered")
    path = write_report(search_run, folder / "report.html", n_images=8)
    assert path == folder / "report.html" and not list(folder.glob("*.tmp"))  # written through a temp file, renamed
    return path


def test_report_of_a_real_search_run(search_run: Path, real_report: Path) -> None:
    text, page = parse(real_report)
    assert page.sections == list(SECTIONS)
    assert len(page.images) == 5  # search front, validated front, grid, strips, progress
    for alt, src in page.images:
        image = decoded(src)
        assert image.width > 200 and image.height > 100, alt
        assert non_blank(image), alt
    assert "could not be rendered" not in text
    notes = absent_notes(text)
    assert len(notes) == 1 and "no compress run in this folder" in notes[0]
    results = json.loads((search_run / "results.json").read_text())
    assert results["command"][:2] == ["flexdiff", "search"] and "--no-report" in results["command"]
    assert results["environment"]["versions"]["torch"] and results["environment"]["machine"]["cpu_count"]
    assert html.escape("flexdiff search --model builtin:digits") in text  # the recorded command, in the provenance
    assert "Chosen schedule" in text and "teacher (ddim-10)" in text


def _variant(search_run: Path, tmp_path: Path, edit) -> Path:
    """A copy of the run's results.json, edited: runs with missing parts."""
    out = tmp_path / "variant"
    out.mkdir()
    results = copy.deepcopy(json.loads((search_run / "results.json").read_text()))
    edit(results)
    (out / "results.json").write_text(json.dumps(results))
    return out


def test_missing_fid_validation_and_model_render_with_notes(search_run: Path, tmp_path: Path) -> None:
    def strip(results: dict) -> None:
        results["teacher"]["fid"] = None
        for row in results["validated"]:
            row["fid"] = None
        results["config"]["model"] = str(tmp_path / "moved-away")

    text, page = parse(write_report(_variant(search_run, tmp_path, strip)))
    notes = " | ".join(absent_notes(text))
    assert "no real-data reference" in notes and "could not be loaded" in notes and "no compress run in this folder" in notes
    assert len(page.images) == 4 and all(non_blank(decoded(src)) for _, src in page.images)  # the grid is the only image missing


def test_empty_run_renders_every_section_and_says_what_is_absent(search_run: Path, tmp_path: Path) -> None:
    def empty(results: dict) -> None:
        results.update(best=None, validated=[], pareto=[], trials={"baselines": [], "searched": []})
        for key in ("command", "earlier_commands", "environment", "partial_step_macs"):
            results.pop(key, None)

    text, page = parse(write_report(_variant(search_run, tmp_path, empty)))
    assert page.sections == list(SECTIONS) and page.images == []
    notes = " | ".join(absent_notes(text))
    for phrase in (
        "no evaluated schedules",
        "no validated schedules",
        "no validated schedule to show",
        "no chosen or validated schedule",
        "no searched trials",
    ):
        assert phrase in notes
    assert "Command rebuilt from the run" in text and "did not record its environment" in text


def compress_results(**drop: bool) -> dict:
    results = {
        "kind": "compress",
        "command": ["flexdiff", "compress", "--model", "builtin:digits", "--out", "c"],
        "config": {"model": "builtin:digits", "seed": 0},
        "teacher": {"macs": 36_200_000, "params": 1_010_657, "fid": 45.0},
        "student": {"macs": 20_100_000, "params": 600_000, "fid": None},
        "blocks": [
            {
                "block": f"down_blocks.{i}",
                "choice": "half-width",
                "macs": 1_000_000 + i,
                "params": 5_000,
                "teacher_macs": 2_000_000,
                "teacher_params": 10_000,
                "loss": 0.01 * (i + 1),
            }
            for i in range(3)
        ],
        "retrain": {
            "history": [
                {"step": s, "alpha": min(1.0, s / 50), "lr": 1e-3, "loss": 1.0 / (s + 1), "feature": 0.5 / (s + 1), "output": 0.2 / (s + 2)}
                for s in range(0, 100, 5)
            ]
        },
    }
    for key in drop:
        results.pop(key)
    return results


def test_compress_run_renders_blocks_totals_and_loss_curves(tmp_path: Path) -> None:
    run = tmp_path / "compress-run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(compress_results()))
    text, page = parse(write_report(run))
    assert "down_blocks.2" in text and "half-width" in text and "1,010,657" in text and "Retraining loss curves" in text
    assert page.sections == ["search", "compress", "provenance"]
    assert [alt for alt, _ in page.images] == ["Retraining loss curves of the student"] and non_blank(decoded(page.images[0][1]))
    notes = " | ".join(absent_notes(text))
    assert "no schedule search in this folder" in notes and "retrain.history" not in notes
    assert html.escape("flexdiff compress --model builtin:digits") in text


def test_compress_with_missing_keys_and_nested_in_a_search_run(search_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "search-with-compress"
    shutil.copytree(search_run, run, ignore=shutil.ignore_patterns("study.db", "teacher_cache*"))
    (run / "compress").mkdir()
    (run / "compress" / "results.json").write_text(json.dumps(compress_results(blocks=True, retrain=True, student=True)))
    text, page = parse(write_report(run, n_images=2))
    notes = " | ".join(absent_notes(text))
    assert "no compress run" not in notes and "student, blocks, retrain.history absent" in notes
    assert len(page.images) == 5 and "36,200,000" in text


def test_cli_report_and_bad_input(search_run: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(search_run), "--out", str(tmp_path / "r.html"), "--n", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.html").stat().st_size > 10_000 and "report ->" in result.stdout
    for args in (["report", str(tmp_path / "nothing-here")], ["report", str(tmp_path)], ["report", str(search_run), "--n", "0"]):
        bad = runner.invoke(app, args)
        assert bad.exit_code == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: "), bad.output
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "results.json").write_text("{not json")
    with pytest.raises(FlexdiffError, match="does not parse"):
        write_report(tmp_path / "corrupt")
    (tmp_path / "afile").write_text("mine")
    bad = runner.invoke(app, ["report", str(search_run), "--out", str(tmp_path / "afile" / "r.html"), "--n", "2"])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1 and "afile" in bad.stderr and "images x" not in bad.stdout  # refused before the grids
    for wrong in ({"trials": {"baselines": 5}}, {"kind": "compress", "teacher": "x"}):  # wrong types: notes, not a traceback
        (tmp_path / "wrong").mkdir(exist_ok=True)
        (tmp_path / "wrong" / "results.json").write_text(json.dumps(wrong))
        assert "could not be rendered" in write_report(tmp_path / "wrong").read_text()


def test_search_writes_its_report_by_default(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A model without a real-data reference: FID is absent and the report says so."""
    out = tmp_path / "run"
    args = [
        "search",
        "--model",
        str(tiny_model_dir),
        "--steps",
        "6",
        "--n",
        "8",
        "--trials",
        "2",
        "--validate-n",
        "8",
        "--segments",
        "2,3",
        "--baseline-branches",
        "0",
        "--speedup",
        "2",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text, page = parse(out / "report.html")
    assert page.sections == list(SECTIONS) and len(page.images) == 5
    assert "no real-data reference" in " ".join(absent_notes(text))


def test_plots_draw_nothing_from_nothing() -> None:
    assert plots.pareto_search([], 2.0, None, 16) is None
    assert plots.pareto_validated(None, [], 2.0, None, 16) is None
    assert plots.search_progress([], [], 2.0) is None
    assert plots.schedule_strips([], 9) is None
    assert plots.loss_curves([{"step": 0}]) is None


def test_strips_colour_every_step_kind_by_its_properties() -> None:
    """Forecast steps get their own colour and legend entry (they were drawn as null steps); partial branches shade."""
    indices, legend = plots.strip_colours([["full", "partial:3", "null"], ["full", "forecast:1", "partial:0"]], 4)
    texts = [text for _, text in legend]
    assert texts == ["full", "partial, branch 0", "partial, branch 3", "null (skipped)", "forecast, branch 1"]
    assert indices == [[0, 2, 3], [0, 4, 1]]
    assert len({str(colour) for colour, _ in legend}) == len(legend)


# --- headless Chromium ------------------------------------------------------------------------------------------------

#: Injected into a copy of the page (the report itself has no script): records errors and failed loads, and on load
#: writes the image count, the images that did not decode and the errors into the DOM, read back with --dump-dom.
HARNESS = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message || ('failed to load ' + (e.target && e.target.tagName)))); }, true);
['error', 'warn'].forEach(function (k) { var f = console[k]; console[k] = function () { window.__errors.push(k + ': ' + Array.prototype.join.call(arguments, ' ')); f.apply(console, arguments); }; });
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.alt; });
  var out = document.createElement('pre'); out.id = 'harness';
  out.textContent = JSON.stringify({images: imgs.length, broken: broken, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""
CHROMIUM_FLAGS = ["--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not on PATH: the headless browser test needs Debian's `chromium` (apt-get install chromium; .ci/run installs it)")
    return path


def test_report_opens_in_headless_chromium(real_report: Path, tmp_path: Path) -> None:
    browser = chromium()
    report = real_report
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text(encoding="utf-8").replace("<head>", "<head>\n" + HARNESS, 1), encoding="utf-8")
    dom = subprocess.run([browser, *CHROMIUM_FLAGS, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=180)
    found = re.search(r'<pre id="harness">(.*?)</pre>', dom.stdout, re.S)
    assert found, f"the page did not finish loading in chromium: {dom.stderr[-1500:]}"
    state = json.loads(html.unescape(found.group(1)))
    assert state == {"images": 5, "broken": [], "errors": []}
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *CHROMIUM_FLAGS, f"--screenshot={shot}", "--window-size=1200,3000", report.as_uri()], capture_output=True, timeout=180)
    assert shot.is_file(), "chromium wrote no screenshot"
    with Image.open(shot) as image:
        assert image.size == (1200, 3000) and non_blank(image)
