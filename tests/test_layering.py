"""The architecture as a test: data flows one way through the pipeline's layers, ``kws`` never
imports ``callbacks``, no import cycle, no module over 450 lines. Every import counts, also those
inside functions (a lazy import is still a dependency)."""

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

PACKAGES = ("kws", "datamodules", "callbacks")
# Lower layers never import higher ones; a layer may import itself and anything below it.
LAYERS = [
    ("kws.utils",),
    ("kws.audio",),
    ("datamodules",),
    ("kws.models", "kws.training", "kws.streams"),
    ("kws.compression",),
    ("kws.export",),
    ("kws.deploy", "kws.tools"),
    ("kws",),  # the package's front door: kws/__init__.py (public names) and kws/__main__.py (the CLI)
    ("callbacks",),  # thin Lightning hooks over everything
]
MAX_LINES = 450


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports (``from a import b`` counts as a.b when b is a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                for alias in node.names
            ]
        else:
            continue
        out.update(name for name in names if name.split(".")[0] in PACKAGES)
    return out


def layer(module: str) -> int:
    matches = [
        (len(prefix), i)
        for i, group in enumerate(LAYERS)
        for prefix in group
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer: add it to LAYERS in {__file__}"
    return max(matches)[1]


GRAPH = {name: imports(path, modules()) for name, path in modules().items()}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_flow_down_the_layers(module):
    upward = sorted(dep for dep in GRAPH[module] if layer(dep) > layer(module))
    assert not upward, f"{module} (layer {LAYERS[layer(module)]}) imports higher layers: {upward}"


def test_kws_never_imports_callbacks():
    offenders = sorted(
        f"{m} -> {d}"
        for m, deps in GRAPH.items()
        if m.split(".")[0] == "kws"
        for d in deps
        if d.split(".")[0] == "callbacks"
    )
    assert not offenders, offenders


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components; a component of more than one module is a cycle."""
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
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
            if len(component) > 1 or v in graph[v]:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles():
    assert not find_cycles(GRAPH), f"import cycles: {find_cycles(GRAPH)}"


def test_no_module_over_450_lines():
    paths = [p for package in (*PACKAGES, "tests") for p in (REPO / package).rglob("*.py")]
    long = {str(p.relative_to(REPO)): n for p in paths if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"


def test_the_checks_can_fail():
    """The layer rule and the cycle finder catch what they claim to."""
    assert (
        layer("kws.export.graph")
        > layer("kws.compression.quantization")
        > layer("kws.training.module")
        > layer("datamodules.layout")
    )
    assert (
        layer("kws.audio.wav") < layer("datamodules.speech_commands") and layer("callbacks.pruning") == len(LAYERS) - 1
    )
    known = modules()
    assert "kws.compression.quantization" in imports(known["kws.export.graph"], known)
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


MAX_INIT_ARGUMENTS = 20


def test_no_init_over_20_arguments():
    """An ``__init__`` with more than 20 arguments (self excluded) wants its options grouped."""
    paths = [p for package in (*PACKAGES, "tests") for p in (REPO / package).rglob("*.py")]
    wide = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "__init__":
                a = node.args
                count = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) - 1 + bool(a.vararg) + bool(a.kwarg)
                if count > MAX_INIT_ARGUMENTS:
                    wide[f"{path.relative_to(REPO)}:{node.lineno}"] = count
    assert not wide, f"__init__ over {MAX_INIT_ARGUMENTS} arguments: {wide}"


def test_tests_mirror_the_packages():
    """Every package folder (``callbacks``, ``datamodules``, ``kws/<sub>``) has its tests folder,
    a package itself: tests/callbacks, tests/datamodules, tests/audio for kws/audio, ..."""
    folders = ["callbacks", "datamodules"] + sorted(
        p.name for p in (REPO / "kws").iterdir() if (p / "__init__.py").is_file()
    )
    missing = [name for name in folders if not (REPO / "tests" / name / "__init__.py").is_file()]
    assert not missing, f"add tests/<name>/ (with __init__.py) for: {missing}"
