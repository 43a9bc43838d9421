"""The documents say what the code is: every name docs/design.md cites resolves in the package,
every link between the README and docs/ lands on a file (and heading), every docs/ page is reachable
from the README, and every test the docs cite exists."""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import functools
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import vjfer

REPO = Path(__file__).resolve().parents[1]
DESIGN = REPO / "docs" / "design.md"
PAGES = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "benchmarks" / "RESULTS.md",
]

# A backticked word with one of these endings names a file a run writes, not a Python name.
FILE_ENDINGS = {
    "json",
    "jsonl",
    "pt",
    "h5",
    "csv",
    "md",
    "png",
    "html",
    "py",
    "toml",
    "txt",
    "partial",
}
IDENTIFIER = r"[A-Za-z_]\w*"
# clips.eval_windows, clips.ROLE_*
DOTTED = re.compile(rf"^{IDENTIFIER}(\.{IDENTIFIER}|\.{IDENTIFIER}?\*)+$")
# ShardWriter, extract()
SINGLE = re.compile(rf"^{IDENTIFIER}(\(\))?$")
# probe/run.py, datasets/ (splits/*.csv is a data file, not a module path)
PATH = re.compile(r"^[\w*/-]+(\.py|/)$")


def all_modules() -> dict[str, object]:
    """Every module of the package by its full name, imported."""
    names = ["vjfer"] + [m.name for m in pkgutil.walk_packages(vjfer.__path__, "vjfer.")]
    return {name: importlib.import_module(name) for name in names if not name.endswith("__main__")}


@pytest.fixture(scope="module")
def modules() -> dict[str, object]:
    return all_modules()


def _has(obj: object, name: str) -> bool:
    """`name` is an attribute of `obj`, or a field of it (a dataclass field or an annotated
    attribute that only instances carry), or, with a `*`, some attribute matches it."""
    if "*" in name:
        return any(fnmatch.fnmatchcase(a, name) for a in dir(obj))
    if hasattr(obj, name):
        return True
    if isinstance(obj, type):
        if dataclasses.is_dataclass(obj) and name in {f.name for f in dataclasses.fields(obj)}:
            return True
        if any(name in getattr(k, "__annotations__", {}) for k in obj.__mro__):
            return True
        try:  # an attribute its methods set: self.layers = ...
            source = inspect.getsource(obj)
        except (OSError, TypeError):
            return False
        return re.search(rf"self\.{re.escape(name)}\b\s*(:[^=\n]*)?=[^=]", source) is not None
    return False


@functools.cache
def defined_names(module_file: str) -> frozenset[str]:
    """The names a module's source defines at top level (def, class, assignment), not those it
    imports."""
    tree = ast.parse(Path(module_file).read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return frozenset(names)


def defines(module: object, name: str) -> bool:
    """`module` defines `name` itself (a `*` matches any defined name): a re-export does not
    count."""
    names = defined_names(module.__file__)
    return any(fnmatch.fnmatchcase(n, name) for n in names) if "*" in name else name in names


def _defined_in(module: object, name: str) -> bool:
    """`name` is defined in `module` itself (not imported into it), or is a constant of it."""
    if not hasattr(module, name):
        return False
    obj = getattr(module, name)
    owner = getattr(obj, "__module__", None)
    return owner is None or owner == module.__name__ or not callable(obj)


def resolve_dotted(ref: str, modules: dict[str, object]) -> bool:
    """`a.b.c`: `a` is a module of the package (by full name after `vjfer.`, or by its last
    component, e.g. `format` for `vjfer.cache.format`), a class defined in the package
    (`Cache.tokens`), or an importable module (`os.preadv`); the rest are attributes, each of the
    one before, and a last part that is a module's attribute must be defined in that module
    (`train.Head` fails when `Head` is defined in `head.py` and only imported by `train.py`)."""
    first, *rest = ref.split(".")
    starts: list[object] = []
    if first == "vjfer":
        starts.append(modules["vjfer"])
    starts += [
        m for full, m in modules.items() if full.rsplit(".", 1)[-1] == first and full != "vjfer"
    ]
    starts += [
        getattr(m, first)
        for m in modules.values()
        if _defined_in(m, first) and isinstance(getattr(m, first), type)
    ]
    if not starts:
        try:
            starts.append(importlib.import_module(first))
        except ImportError:
            return False
    for start in starts:
        obj, ok = start, True
        for i, part in enumerate(rest):
            # a submodule not imported by its package (vjfer.cache.format) is one the walk imported
            sub = f"{getattr(obj, '__name__', '')}.{part}"
            if sub in modules:
                obj = modules[sub]
            elif i == len(rest) - 1:
                ours = inspect.ismodule(obj) and obj.__name__.startswith("vjfer")
                ok = defines(obj, part) if ours else _has(obj, part)
                break
            elif hasattr(obj, part):
                obj = getattr(obj, part)
            else:
                ok = False
                break
        if ok:
            return True
    return False


def resolve_path(ref: str, base: Path | None = None) -> bool:
    """A file or folder of the repository, or of the package (`probe/run.py`), or of `base` (a
    table row's package: `ravdess.py` in the `datasets/` row)."""
    roots = ([base] if base else []) + [REPO, REPO / "vjfer"]
    return any(list(root.glob(ref.rstrip("/"))) for root in roots)


def module_of_cell(cell: str) -> list[Path]:
    """The files or folders a module-table row is about: `cache/` -> vjfer/cache, `cli.py` ->
    vjfer/cli.py."""
    return [REPO / "vjfer" / ref for ref in re.findall(r"`([^`]+)`", cell)]


def row_owner(paths: list[Path], modules: dict[str, object]) -> list[object]:
    """The modules a row's single names may live in: the row's files, or every module of its
    package."""
    owners = []
    for path in paths:
        relative = str(path.relative_to(REPO / "vjfer")).removesuffix(".py").rstrip("/")
        dotted = "vjfer." + relative.replace("/", ".")
        owners += [
            m for full, m in modules.items() if full == dotted or full.startswith(dotted + ".")
        ]
    return owners


def resolve_single(name: str, owners: list[object]) -> bool:
    """A name cited in a module-table row is a name of one of the row's modules, or a field of a
    class defined there (`TrainConfig`'s `layer`)."""
    name = name.removesuffix("()")
    if any(hasattr(m, name) for m in owners):  # defined there, or a name it uses (`LayerView`)
        return True
    classes = [v for m in owners for v in vars(m).values() if isinstance(v, type)]
    return any(_has(c, name) for c in classes)


def looks_like_code(ref: str) -> bool:
    """`ShardWriter`, `build_cache`, `extract()`, `TOKENS_VERSION`: a name; `center`, `layer`: a
    word."""
    return bool(SINGLE.match(ref)) and (ref.endswith("()") or "_" in ref or not ref.islower())


def unresolved_design_names(modules: dict[str, object]) -> list[str]:
    """Every backticked module path, dotted name or (in the module table, against the row's modules)
    single name of docs/design.md that the package does not have, as 'line N: `ref`'."""
    missing = []
    section = ""
    for number, line in enumerate(DESIGN.read_text(encoding="utf-8").splitlines(), 1):
        section = line if line.startswith("## ") else section
        row = section == "## Modules" and line.startswith("| `")  # | `probe/run.py` | its job |
        paths = module_of_cell(line.split(" | ")[0]) if row else []
        for ref in re.findall(r"`([^`\n]+)`", line):
            if PATH.match(ref):
                ok = resolve_path(ref, next((p for p in paths if p.is_dir()), None))
            elif DOTTED.match(ref) and ref.rsplit(".", 1)[-1] not in FILE_ENDINGS:
                ok = resolve_dotted(ref, modules)
            elif row and looks_like_code(ref):
                ok = resolve_single(ref, row_owner(paths, modules))
            else:
                continue
            if not ok:
                missing.append(f"line {number}: `{ref}`")
    return missing


def test_every_name_design_md_cites_exists(modules):
    missing = unresolved_design_names(modules)
    listing = "\n".join(missing)
    assert not missing, f"docs/design.md cites names the package does not have:\n{listing}"


def test_the_resolver_finds_what_is_there_and_refuses_what_is_not(modules):
    assert resolve_dotted("clips.eval_windows", modules)
    assert resolve_dotted("format.shard_mismatch", modules)  # a module by its last component
    assert resolve_dotted("Cache.eval_clips", modules)  # a class defined in the package
    assert resolve_dotted("clips.ROLE_*", modules)
    assert resolve_dotted("os.preadv", modules)
    assert not resolve_dotted("clips.no_such_name", modules)
    assert not resolve_dotted("no_such_module.x", modules)
    assert not resolve_dotted("Cache.no_such_method", modules)
    assert resolve_dotted("Cache.layers", modules)  # set in __init__
    assert resolve_dotted("head.Head", modules)
    assert not resolve_dotted("train.Head", modules)  # only imported there
    assert resolve_path("probe/run.py") and not resolve_path("probe/no_such.py")


def heading_anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces ->
    '-'."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    headings = re.findall(r"^#+ (.+)$", text, re.M)
    return {
        re.sub(r"[^\w\- ]", "", h.strip().lower().replace("`", "")).replace(" ", "-")
        for h in headings
    }


def broken_links(page: Path, root: Path = REPO) -> list[str]:
    """Every relative link of `page` whose file, or whose heading anchor, does not exist."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(f"{page.relative_to(root)}: {target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in heading_anchors(path):
            broken.append(f"{page.relative_to(root)}: {target} (no such heading)")
    return broken


def test_every_link_of_the_readme_and_docs_resolves():
    broken = [b for page in PAGES for b in broken_links(page)]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    linked = {
        (REPO / t.partition("#")[0]).resolve() for t in re.findall(r"\]\((docs/[^)\s]+)\)", readme)
    }
    unlinked = [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not unlinked, f"docs/ pages the README does not link: {unlinked}"


def test_the_link_check_sees_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# A heading: here\n")
    page.write_text("[ok](other.md#a-heading-here) [file](missing.md) [anchor](other.md#nowhere)\n")
    assert broken_links(page, root=tmp_path) == [
        "page.md: missing.md (no such file)",
        "page.md: other.md#nowhere (no such heading)",
    ]


def test_every_test_the_docs_cite_exists():
    """`test_x.py::test_y` and bare `test_y` names in the README and docs/ are tests of tests/."""
    defined = {}
    for path in (REPO / "tests").glob("test_*.py"):
        for name in re.findall(r"^def (test_\w+)", path.read_text(encoding="utf-8"), re.M):
            defined.setdefault(name, set()).add(path.name)
    missing = []
    for page in PAGES[:-1]:
        for ref in re.findall(r"`((?:test_\w+\.py::)?test_\w+)`", page.read_text(encoding="utf-8")):
            file, _, name = ref.rpartition("::")
            if name not in defined or (file and file not in defined[name]):
                missing.append(f"{page.relative_to(REPO)}: {ref}")
    assert not missing, "the docs cite tests that do not exist:\n" + "\n".join(missing)


def cited_sections() -> list[tuple[str, str, str]]:
    """(where, document, section) for every `docs/X.md, "Section"` or `README "Section"` that the
    package's docstrings, comments and messages cite."""
    cited = []
    for path in sorted((REPO / "vjfer").rglob("*.py")):
        text = re.sub(r"\s*\n\s*#?\s*", " ", path.read_text(encoding="utf-8"))  # join wrapped lines
        pattern = r"(docs/\w+\.md|README)[,\s(]*\"([^\"]+)\""
        for document, section in re.findall(pattern, text):
            cited.append((str(path.relative_to(REPO)), document, section))
    return cited


def test_every_section_the_code_cites_exists():
    assert len(cited_sections()) >= 5  # the pattern still finds the citations
    missing = []
    for where, document, section in cited_sections():
        file = REPO / ("README.md" if document == "README" else document)
        text = file.read_text(encoding="utf-8") if file.exists() else ""
        headings = re.findall(r"^#+ (.+)$", text, re.M)
        if not any(h.startswith(section) for h in headings):
            missing.append(f'{where}: {document}, "{section}"')
    assert not missing, "the code cites sections that do not exist:\n" + "\n".join(missing)
