"""The layout holds: no import cycle and no import of a higher layer (lazy imports included), with the layer order
read from docs/architecture.md, so the page and the code cannot disagree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "flexdiff"
DOC = ROOT / "docs" / "architecture.md"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """Every flexdiff module ``name`` imports, at module level or inside functions (``TYPE_CHECKING`` blocks too).
    ``from pkg import x`` counts as importing ``pkg.x`` when that is a module, else ``pkg``."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES and "." in target:
                target = target.rpartition(".")[0]  # `import flexdiff.models.load` -> the module itself; attributes dropped
            if target in MODULES and target.startswith("flexdiff") and target != name:
                found.add(target)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def layers() -> dict[str, int]:
    """unit -> layer, from the table in docs/architecture.md (rows ``| N | `unit`, `unit` | ... |``)."""
    text = DOC.read_text()
    table = text[text.index("<!-- layers") :]
    out: dict[str, int] = {}
    for line in table.splitlines()[1:]:
        m = re.match(r"\|\s*(\d+)\s*\|([^|]*)\|", line)
        if m:
            for unit in re.findall(r"`([^`]+)`", m[2]):
                out[unit] = int(m[1])
        elif out and not line.startswith("|"):
            break
    return out


def unit_of(name: str) -> str | None:
    """The top-level unit of a module (``flexdiff.models.load`` -> ``models``); None for the package root."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_import_cycle() -> None:
    # Tarjan's strongly connected components over the import graph
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(n) for n in MODULES} - {None}
    assert units == set(layers()), (
        f"units without a layer in docs/architecture.md: {sorted(units - set(layers()))}; layers without a unit: {sorted(set(layers()) - units)}"
    )


def test_no_module_imports_a_higher_layer_or_a_sibling_of_its_layer() -> None:
    rank = layers()
    bad = []
    for name, targets in GRAPH.items():
        unit = unit_of(name)
        if unit is None:
            continue  # the package root re-exports the public API from every layer
        for target in targets:
            other = unit_of(target)
            if other is None:
                bad.append(f"{name} imports the package root (import the defining module instead)")
            elif other != unit and rank[other] >= rank[unit]:
                bad.append(f"{name} (layer {rank[unit]} {unit}) imports {target} (layer {rank[other]} {other})")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The check must be able to fail: a function-level import of a higher layer is found."""
    assert "flexdiff.running.executor" in GRAPH["flexdiff.running.own_loop"]  # module level
    assert any(t.startswith("flexdiff.nas") for t in GRAPH["flexdiff.cli.compress"])  # inside the command function
    assert layers()["cli"] > layers()["search"] > layers()["models"] > layers()["utils"]


@pytest.mark.parametrize("name", ["flexdiff", "flexdiff.cli", "flexdiff.search.run", "flexdiff.nas.compress", "flexdiff.report"])
def test_entry_points_import(name: str) -> None:
    import importlib

    importlib.import_module(name)


#: a step kind named in a comparison: ``s.kind == FULL``, ``x != "null"``, ``"partial" in ...``, ``s.startswith("partial")``
KIND_NAME_COMPARISON = re.compile(
    r"""(==|!=)\s*(FULL|NULL|PARTIAL|FORECAST|"(full|partial|null|forecast)")(?![\w"])"""
    r"""|\b(FULL|NULL|PARTIAL|FORECAST)\s*(==|!=|in\b)|"(full|partial|null|forecast)"\s*(==|!=|in\b)"""
    r"""|startswith\(\(?"(full|partial|null|forecast)|\bin\s*[({\[]\s*(FULL|NULL|PARTIAL|FORECAST)\b"""
)


def test_the_pattern_finds_kind_name_comparisons() -> None:
    for line in ("if s.kind == FULL:", 'x = s != "null"', 'if "partial" in kinds:', 's.startswith(("partial", "forecast"))', "k in (PARTIAL, FORECAST)"):
        assert KIND_NAME_COMPARISON.search(line), line
    for line in ('if model.noise.kind == "flow":', "Step(FULL)", 'return "full"', "if s.info.fills_cache:", 'mode == "fullscreen"'):
        assert not KIND_NAME_COMPARISON.search(line), line


def test_only_the_step_kinds_module_compares_kind_names() -> None:
    """Everything else reads a kind's properties (StepKind), so a new kind is one registration, not a hunt for names."""
    found = []
    for path in sorted([*PACKAGE.rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]):
        if path == PACKAGE / "schedule" / "kinds.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if KIND_NAME_COMPARISON.search(line.split("#")[0]):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "step kinds compared by name (read StepKind properties instead):\n" + "\n".join(found)
