"""The package's shape: no import circles, and no module importing from a layer above its own
(cli -> search, trained -> space, data, distributed, reports -> the shared top modules ->
errors)."""

import ast
from pathlib import Path

import autocnn

PACKAGE = Path(autocnn.__file__).parent
# Lower numbers are lower layers; a module may import from its own layer or below.
LAYERS = {
    "errors": 0, "tables": 0, "console": 0,
    "config": 1, "control": 1, "devices": 1, "metrics": 1, "tracking": 1,
    "data": 2, "space": 2, "distributed": 2, "reports": 2,
    "search": 3, "trained": 3,
    "cli": 4, "__main__": 4,
}
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 150


def modules() -> dict[str, Path]:
    return {".".join(("autocnn", *path.relative_to(PACKAGE).with_suffix("").parts))
            .removesuffix(".__init__"): path for path in PACKAGE.rglob("*.py")}


def imports(path: Path) -> set[str]:
    """The autocnn modules ``path`` imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("autocnn")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autocnn"):
            names = {f"{node.module}.{a.name}" for a in node.names}
            found |= {n for n in names if n in modules()} or {node.module}
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else -1  # the package itself: its public API


def graph() -> dict[str, set[str]]:
    return {name: {m for m in imports(path) if m != name} for name, path in modules().items()}


def test_every_module_has_a_layer():
    assert all(layer(m) >= 0 for m in modules() if m != "autocnn")


def test_no_module_imports_from_a_higher_layer():
    upward = [f"{m} (layer {layer(m)}) imports {i} (layer {layer(i)})"
              for m, targets in graph().items() if m != "autocnn"
              for i in targets if i != "autocnn" and layer(i) > layer(m)]
    assert upward == []


def find_cycles(edges: dict[str, set[str]]) -> set[str]:
    """Every import circle in ``edges``, as "a -> b -> a"."""
    cycles = set()

    def visit(node, path, done):
        for target in sorted(edges.get(node, ())):
            if target in path:
                cycles.add(" -> ".join(path[path.index(target):] + [target]))
            elif target not in done:
                done.add(target)
                visit(target, path + [target], done)

    for start in edges:
        visit(start, [start], {start})
    return cycles


def test_no_import_circles():
    # The package's own __init__ re-exports; its submodules import their siblings directly.
    assert sorted(c for c in find_cycles(graph()) if not c.startswith("autocnn ")) == []


def test_the_circle_finder_finds_circles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) >= {"a -> b -> c -> a"}
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == set()


def test_modules_and_classes_stay_small():
    large = []
    for name, path in modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            large.append(f"{name}: {len(text.splitlines())} lines")
        large += [f"{name}.{n.name}: {n.end_lineno - n.lineno + 1} lines"
                  for n in ast.walk(ast.parse(text))
                  if isinstance(n, ast.ClassDef) and n.end_lineno - n.lineno + 1 > MAX_CLASS_LINES]
    assert large == []


def test_the_walk_sees_imports():
    """The checks above would pass on a walk that saw nothing."""
    assert "autocnn.search.tuners" in graph()["autocnn.search.run"]
    assert "autocnn.data.splits" in imports(modules()["autocnn.data.load"])


def test_benchmarks_use_only_the_public_api():
    benchmarks = Path(__file__).parents[2] / "benchmarks"
    reached = []
    for path in benchmarks.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autocnn"):
                names = {a.name for a in node.names}
                if node.module != "autocnn" or not names <= set(autocnn.__all__):
                    reached.append(f"{path.name}: from {node.module} import {', '.join(names)}")
            elif isinstance(node, ast.Import):
                reached += [f"{path.name}: import {a.name}" for a in node.names
                            if a.name.startswith("autocnn.")]
    assert reached == []


def test_the_public_api_resolves_every_name():
    assert all(getattr(autocnn, name) is not None for name in autocnn.__all__)
