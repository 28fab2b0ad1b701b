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
    assert "detect.image.residuals" in g["detect.image.cnn"]
    assert "detect.image.cnn" in g["detect.image.npr"]
    assert "detect.attacks" in g["detect.attacks.text"]  # ``from . import Attack``
    assert "detect.core.errors" in g["detect.core.registry"]


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


# The layers, bottom up. A module imports (at any depth, lazily or not) only its own package
# and the layers below it: core knows nothing of media, image/text/evidence are peers that
# never import one another, face builds on image (its networks and crops), app on every
# modality, and the CLI is the shell over all of it.
LAYERS = {"core": 0, "io": 1, "attacks": 2, "image": 3, "text": 3, "evidence": 3, "face": 4,
          "app": 5, "cli": 6}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "detect" else None


def _without_type_checking(tree: ast.Module) -> ast.Module:
    """The tree minus ``if TYPE_CHECKING:`` blocks: imports for annotations only, never run."""
    class Strip(ast.NodeTransformer):
        def visit_If(self, node: ast.If) -> ast.AST | list[ast.stmt]:
            if "TYPE_CHECKING" in ast.unparse(node.test):
                return [self.visit(s) for s in node.orelse]
            return self.generic_visit(node)

    return Strip().visit(tree)


def test_every_detect_module_sits_in_a_layer():
    loose = [n for n in MODULES if n != "detect" and _layer(n) not in LAYERS]
    assert not loose, f"modules outside the layers {sorted(LAYERS)}: {loose}"


def test_detect_imports_only_downward():
    offenders = []
    for name, path in MODULES.items():
        here = _layer(name)
        if here is None:  # detect/__init__.py: lazy names, resolved through importlib
            continue
        tree = _without_type_checking(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for target, names, line in _imports(tree, name):
            for t in _targets(target, names) if target.startswith("detect") else ():
                there = _layer(t)
                if there is None or there == here:
                    continue
                if LAYERS[there] >= LAYERS[here]:
                    offenders.append(f"{path.relative_to(ROOT)}:{line} ({here}) imports {t} "
                                     f"({there})")
    assert not offenders, "imports that reach sideways or up:\n" + "\n".join(offenders)


MAX_LINES = 500  # the house rule: a module a newcomer can read in one sitting


def test_no_module_outside_tests_is_over_the_house_limit():
    big = []
    for top in ("detect", "generators", "benchmarks", "scripts"):
        for p in sorted((ROOT / top).rglob("*.py")):
            n = len(p.read_text(encoding="utf-8").splitlines())
            if n > MAX_LINES:
                big.append(f"{p.relative_to(ROOT)}: {n} lines")
    assert not big, f"modules over {MAX_LINES} lines:\n" + "\n".join(big)
