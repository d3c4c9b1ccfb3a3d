"""The dependency rules of DESIGN.md, read from the source: imports point down the layers, no
import cycles between modules, no private name crosses a module boundary, and no module or
function grows past its limit without a reason written at its top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "fitwell"

# Lowest first. A module may import its own layer or any layer below it. Top-level modules and
# packages are named by their first dotted part under fitwell.
LAYERS = [
    {"errors", "findings", "registry", "files"},
    {"config"},
    {"data"},
    {"models"},
    {"engine"},
    {"privacy"},
    {"evaluate"},
    {"track"},
    {"run", "pipeline", "estimators", "launch"},
    {"tune", "cv", "ensemble", "tasks"},
    {"serve", "testing", "api"},
    {"cli", "__main__"},
]
# evaluate's metrics sit below the engine, which reports them each epoch (DESIGN.md).
LOW_MODULES = {"fitwell.evaluate.metrics": 3.5}

MAX_FUNCTION_LINES = 59  # the figure: the longest function under 60 lines
MAX_MODULE_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> float:
    if module in LOW_MODULES:
        return LOW_MODULES[module]
    parts = module.split(".")
    if len(parts) == 1:  # fitwell/__init__.py: the public face, above everything
        return len(LAYERS)
    for index, names in enumerate(LAYERS):
        if parts[1] in names:
            return float(index)
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py; add it to LAYERS")


def sources() -> dict[str, tuple[Path, ast.Module]]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        found[module_name(path)] = (path, ast.parse(path.read_text(), str(path)))
    return found


def _typing_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (annotations, not run-time imports)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found |= {id(n) for child in node.body for n in ast.walk(child)}
    return found


def imports(module: str, path: Path, tree: ast.Module,
            runtime_only: bool = False) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every fitwell import, at any depth."""
    out = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    skip = _typing_only(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("fitwell")]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([target] if target else [])])
            if target.startswith("fitwell"):
                out.append((target, [a.name for a in node.names], node.lineno))
    return out


def resolve(target: str, names: list[str], known: dict) -> list[str]:
    """The modules an import statement reaches (``from pkg import module`` reaches the module)."""
    reached = [n for n in (f"{target}.{name}" for name in names) if n in known]
    return reached or [target]


SOURCES = sources()


def test_imports_point_down_the_layers():
    upward = []
    for module, (path, tree) in SOURCES.items():
        for target, names, line in imports(module, path, tree):
            for reached in resolve(target, names, SOURCES):
                if reached != "fitwell" and layer_of(reached) > layer_of(module):
                    upward.append(f"{path.relative_to(ROOT)}:{line} {module} -> {reached}")
    assert not upward, "imports that point up the layers:\n" + "\n".join(upward)


def test_no_import_cycles_between_modules():
    graph = {m: set() for m in SOURCES}
    for module, (path, tree) in SOURCES.items():
        for target, names, _ in imports(module, path, tree, runtime_only=True):
            for reached in resolve(target, names, SOURCES):
                # a package's __init__ re-exporting its own modules is not a cycle
                if reached in graph and reached != module and not reached.startswith(module + "."):
                    graph[module].add(reached)
    cycles, state = [], {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # a package importing its submodule while the submodule imports the package's siblings is
    # fine; a real cycle is two modules that are not package and member
    real = [c for c in cycles if not all(b.startswith(a + ".") or a.startswith(b + ".")
                                         for a, b in zip(c.split(" -> "), c.split(" -> ")[1:], strict=False))]
    assert not real, "import cycles:\n" + "\n".join(real)


def test_no_private_name_crosses_a_module_boundary():
    crossing = []
    for module, (path, tree) in SOURCES.items():
        for target, names, line in imports(module, path, tree):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != module:
                crossing.append(f"{path.relative_to(ROOT)}:{line} imports {', '.join(private)} from {target}")
    assert not crossing, "\n".join(crossing)


def test_no_callable_package():
    for module, (path, _tree) in SOURCES.items():
        text = path.read_text()
        assert "__class__ = " not in text or "sys.modules" not in text, f"{module} swaps its module class"


def _long_functions(tree: ast.Module) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                out.append((node.name, length))
    return out


def test_functions_stay_short():
    long = [f"{path.relative_to(ROOT)}: {name} {length} lines"
            for module, (path, tree) in SOURCES.items() for name, length in _long_functions(tree)]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_long_modules_say_why():
    unexplained = []
    for path, tree in SOURCES.values():
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(tree) or ""
        if lines > MAX_MODULE_LINES and "Why this module is long" not in doc:
            unexplained.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not unexplained, (f"modules over {MAX_MODULE_LINES} lines without 'Why this module is long'"
                             " in their docstring:\n" + "\n".join(unexplained))


@pytest.mark.parametrize("module, expected", [
    ("fitwell.errors", 0), ("fitwell.data.split", 2), ("fitwell.engine.loop", 4), ("fitwell.cli", 11),
    ("fitwell.evaluate.metrics", 3.5),
])
def test_layer_table(module, expected):
    assert layer_of(module) == expected
