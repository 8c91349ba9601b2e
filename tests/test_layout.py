"""The package's layering, read from the source with `ast`: no import circle, and arrows point down.

Every import counts, at module level or inside a function (a lazy import is still a dependency).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hf_facerec"
#: The core, which the layers above build on: it must never import them.
CORE = ("models", "data", "evaluation")
ABOVE = ("training", "benchmarks", "hub", "demo", "cli", "metrics", "search", "hypernet", "representation")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py") if "metrics" not in path.parts[-3:-1]}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The hf_facerec modules ``name`` imports (submodules resolved: ``from . import x`` -> ``pkg.x``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in known}
    found.discard(name)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_the_graph_is_read(graph):
    assert "hf_facerec.models.heads" in graph["hf_facerec.models.modeling_facerec"]
    assert "hf_facerec.models.margins" in graph["hf_facerec.models.heads"]
    assert "hf_facerec.data.preprocess" in graph["hf_facerec.benchmarks.runner"]


def test_no_import_circle(graph):
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycle = path[path.index(target):] + [target]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_core_never_imports_the_layers_above(graph):
    for name, targets in graph.items():
        layer = name.split(".")[1] if name.count(".") else ""
        if layer not in CORE:
            continue
        upward = sorted(t for t in targets if t.split(".")[1] in ABOVE)
        assert not upward, f"{name} imports {upward}: the core must not depend on {ABOVE}"


def test_research_and_apps_sit_above_the_core(graph):
    """Nothing in the core imports the top-level embedder either (it is built on models + data)."""
    for name, targets in graph.items():
        if name.split(".")[1:2] and name.split(".")[1] in ("models", "evaluation"):
            assert "hf_facerec.embedding" not in targets, name
