"""The layers a newcomer can see: ``detect`` is the core and never imports ``generators`` or
``benchmarks`` (only the CLI may, inside the commands that need them), and detect's modules
import one another without a cycle at module level. Read from the source with ``ast``, so a
lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DETECT = ROOT / "detect"
OUTER = ("generators", "benchmarks")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(DETECT.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(node: ast.AST, module: str) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) for every import statement below ``node``."""
    out = []
    for n in ast.walk(node):
        if isinstance(n, ast.Import):
            out += [(a.name, [], n.lineno) for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            out.append((_absolute(n, module), [a.name for a in n.names], n.lineno))
    return out


def _absolute(n: ast.ImportFrom, module: str) -> str:
    if not n.level:
        return n.module or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[:len(base) - (n.level - 1)]
    return ".".join(base + ([n.module] if n.module else []))


def _top_level(tree: ast.Module) -> list[ast.stmt]:
    """Statements that run when the module is imported: the module body, into if/try/with
    blocks and class bodies, never into functions, and not under ``if TYPE_CHECKING:``."""
    out, todo = [], list(tree.body)
    while todo:
        st = todo.pop()
        if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(st, ast.If) and "TYPE_CHECKING" in ast.unparse(st.test):
            todo += st.orelse
            continue
        if isinstance(st, (ast.Import, ast.ImportFrom)):
            out.append(st)
            continue
        for field in ("body", "orelse", "finalbody", "handlers"):
            todo += getattr(st, field, [])
    return out


def _in_cli(name: str) -> bool:
    return name == "detect.cli" or name.startswith("detect.cli.")


def _targets(target: str, names: list[str]) -> set[str]:
    """The detect modules an import loads: the module itself (or its nearest existing parent),
    and each imported name that is a submodule."""
    found = set()
    mod = target
    while mod and mod not in MODULES:
        mod = mod.rpartition(".")[0]
    if mod:
        found.add(mod)
    found |= {f"{target}.{a}" for a in names if f"{target}.{a}" in MODULES}
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges = set()
        for st in _top_level(tree):
            for target, names, _ in _imports(st, name):
                if target == "detect" or target.startswith("detect."):
                    edges |= _targets(target, names)
        graph[name] = edges - {name}
    return graph


def test_detect_never_imports_generators_or_benchmarks_outside_the_cli():
    offenders = []
    for name, path in MODULES.items():
        if _in_cli(name):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for target, _, line in _imports(tree, name):
            if target.split(".")[0] in OUTER:
                offenders.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert not offenders, "detect is the core; these reach outward:\n" + "\n".join(offenders)


def test_the_import_reader_sees_relative_imports():
    g = _graph()
    assert "detect.detectors.residuals" in g["detect.detectors.cnn"]
    assert "detect.detectors.cnn" in g["detect.detectors.npr"]
    assert "detect.attacks" in g["detect.attacks.text"]  # ``from . import Attack``
    assert "detect.errors" in g["detect.registry"]


def test_no_import_cycle_among_detect_modules_at_module_level():
    graph = _graph()
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    stack: list[str] = []
    cycles = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join([*stack[stack.index(t):], t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "module-level import cycles in detect:\n" + "\n".join(cycles)
