"""The import rules of docs/design.md ("Import layers"), for every module of vjfer/: a module
imports only modules of its own layer or of layers below it, and no chain of imports leads back to
the module it starts from (within a layer too). Imports are read with `ast` (the modules are not
imported), function-level imports included. The table lives here; the test also checks that
docs/design.md states the same table.

The import graph: an edge for each `import` / `from ... import` statement anywhere in a module, to
the vjfer module it names (`from vjfer.cache import open_cache` names the package `vjfer.cache`,
its `__init__.py`; `from vjfer import cache` and `from vjfer.cache import reader` name the module).
That importing `vjfer.cache.reader` first runs `vjfer/cache/__init__.py` is not an edge: a package
whose `__init__` gathers its own submodules would otherwise be a cycle with each of them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "vjfer"

# Bottom to top. An entry names a module or a package (which covers its modules).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "records",
        (
            "vjfer",
            "errors",
            "schemas",
            "files",
            "lock",
            "torchfile",
            "digests",
            "clips",
            "protocols",
            "labels",
            "metrics",
            "store",
            "results",
            "tables",
            "run_protocol",
            "mlp",
            "env",
        ),
    ),
    (
        "data in",
        (
            "datasets",
            "prepare",
            "video",
            "frame_folders",
            "decode",
            "face",
            "augment",
            "synthetic",
            "synthetic_frames",
        ),
    ),
    ("encoders", ("encoders",)),
    ("cache", ("cache",)),
    ("stage 1", ("extract",)),
    ("stage 2", ("probe", "runs", "convert")),
    (
        "consumers",
        (
            "cross",
            "cluster",
            "report",
            "report_html",
            "run_details",
            "compare",
            "predict",
            "timeline",
            "figures",
            "bench",
            "bench_page",
        ),
    ),
    ("cli", ("cli", "__main__", "demo")),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(_module_name(p) for p in PACKAGE.rglob("*.py"))


def layer_of(module: str) -> int | None:
    """The layer index of a vjfer module (`vjfer.probe.train`), or None when the table lacks it."""
    best: tuple[int, int] | None = None  # (entry length, layer): the longest entry wins
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            name = "vjfer" if entry == "vjfer" else f"vjfer.{entry}"
            if module == name or (entry != "vjfer" and module.startswith(name + ".")):
                if best is None or len(name) > best[0]:
                    best = (len(name), index)
    return None if best is None else best[1]


def _imports(module: str) -> set[str]:
    """The vjfer modules `module` imports (`from vjfer import cache` names vjfer.cache)."""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "vjfer"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "vjfer":
                continue
            for alias in node.names:  # a submodule imported by name, else the module itself
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return found - {module}


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if layer_of(m) is None]
    assert not missing, (
        f"modules missing from the layer table of tests/test_import_layers.py: {missing}; add each "
        "to its layer there and in docs/design.md ('Import layers')"
    )


@pytest.mark.parametrize("module", MODULES)
def test_imports_run_down_the_layers(module):
    mine = layer_of(module)
    if mine is None:
        pytest.fail(
            f"{module} is missing from the layer table (tests/test_import_layers.py LAYERS)"
        )
    upward = sorted(
        f"{other} ({LAYERS[layer][0]})"
        for other in _imports(module)
        if (layer := layer_of(other)) is not None and layer > mine
    )
    assert not upward, f"{module} ({LAYERS[mine][0]}) imports from a layer above it: {upward}"


def test_design_md_states_the_same_table():
    text = (REPO / "docs" / "design.md").read_text(encoding="utf-8")
    section = text.split("## Import layers", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+)\. ([^|]+?) \| (.+?) \|$", section, flags=re.M)
    stated = [(name, tuple(re.findall(r"`([^`]+)`", cells))) for _, name, cells in rows]
    assert stated == LAYERS


def import_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of `graph` (module -> modules it imports) as [a, b, ..., a]; [] when none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return []


def test_import_cycle_finds_a_cycle():
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert import_cycle({"a": {"b"}, "b": {"c"}, "d": {"a", "c"}}) == []


def test_the_import_graph_has_no_cycle():
    graph = {module: _imports(module) & set(MODULES) for module in MODULES}
    assert graph["vjfer.decode"] >= {"vjfer.video", "vjfer.frame_folders"}  # the graph is read
    cycle = import_cycle(graph)
    assert not cycle, f"import cycle (module- or function-level imports): {' -> '.join(cycle)}"
