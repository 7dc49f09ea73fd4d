"""The hub layer's architecture, checked from the code itself so that it cannot rot.

Every module of ``hubloader/`` is read (ast, every node: imports inside functions and under TYPE_CHECKING
count too) and its imports of our own modules become arrows. The arrows must point down the layers below,
never up, and no set of modules may import each other in a circle. gradio belongs to the faces alone, and
the hub layer never imports a host (ComfyUI, A1111) or the glue beside it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYER = ROOT / "hubloader"

#: Lowest first. A module may import modules of its own layer or of a layer below it, never above.
LAYERS: list[tuple[str, ...]] = [
    ("core",),  # types, errors, settings, host folder layouts
    ("engine",),  # transfers, rate limits, sniffing, hashing
    ("sharedcache",),  # folder and S3 stores many machines fetch through
    ("gate",),  # the one entry point of every download: hosts, destination, trust, then cache and engine
    ("sources",),  # HuggingFace, CivitAI, references
    ("library",),  # the index, recognisers, triggers, sidecars, scans
    ("pipeline",),  # the one install pipeline every download passes
    ("registry",),  # ModelRegistry, the specification's facade
    ("workflows",),  # workflow/image/infotext parsing, resolution, lockfiles
    ("faces",),  # command line, Gradio app, job queue
    ("api", "__init__", "__main__"),  # the package's public names
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
#: Imported by faces (and nodes/, scripts/) only.
FACE_ONLY = {"gradio", "fastapi", "starlette", "uvicorn"}
#: Hosts and the glue beside the hub layer: never imported by it.
NEVER = {"folder_paths", "comfy", "comfy_extras", "server", "execution", "modules", "nodes", "scripts", "tests"}
#: The root package serves the hub layer when a clone is named hubloader (see the root __init__.py), and then
#: finds its glue beside the layer: the layer must not hold a module of the glue's names.
GLUE_NAMES = {"nodes", "scripts", "tests", "web", "javascript", "benchmarks", "install", "docs"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(LAYER.rglob("*.py")) if "__pycache__" not in p.parts}


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(module: str) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for every import in ``module``, ours resolved to the module file they load."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if sub in MODULES else target), node.lineno


def our_arrows() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _ in imports_of(module):
            while target and target not in MODULES:  # hubloader.core.errors.X → hubloader.core.errors
                target = target.rpartition(".")[0]
            if target and target != module:
                graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_every_module_belongs_to_a_known_layer():
    unknown = sorted(m for m in MODULES if m != "hubloader" and layer_of(m) not in RANK)
    assert unknown == [], f"modules outside every layer (add the package to LAYERS, in its place): {unknown}"


def test_no_import_cycle():
    assert cycles(our_arrows()) == []


def test_no_upward_import():
    upward = [
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module, targets in our_arrows().items()
        for target in targets
        if target != "hubloader"
        and RANK[layer_of(module)] < RANK[layer_of(target)]
        or target == "hubloader"
        and RANK[layer_of(module)] < RANK["__init__"]
    ]
    assert sorted(upward) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_faces_alone_import_gradio_and_no_module_imports_a_host(module: str):
    for target, line in imports_of(module):
        top = target.split(".")[0]
        if top in FACE_ONLY:
            assert layer_of(module) == "faces", f"{module}:{line} imports {target}; only faces may"
        assert top not in NEVER, f"{module}:{line} imports {target}: the hub layer never imports a host or glue"


def test_the_layer_has_no_module_named_like_the_glue_beside_it():
    assert not {p.stem for p in LAYER.iterdir()} & GLUE_NAMES


def test_the_test_itself_sees_arrows_and_would_see_a_cycle():
    """A check that found nothing because it read nothing would pass: it reads real arrows and catches a loop."""
    graph = our_arrows()
    assert "hubloader.core.errors" in graph["hubloader.engine.download"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
