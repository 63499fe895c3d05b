"""Imports point one way (docs/layout.md): scripts -> stages (stage helpers) -> voc12 -> tool -> network ->
vocabulary.

Every ``import`` statement of the repository (module level and inside functions) is read with ``ast``.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Lowest layer first; a module may import first-party code of its own package or of a lower layer only.
LAYERS = ("vocabulary", "network", "tool", "voc12", "stages")
# (importing module, imported package) pairs that break the rule today, each with the reason it is allowed.
# None today; an entry must be deleted once its import is gone (the test fails while it is stale).
KNOWN_EXCEPTIONS: set[tuple[str, str]] = set()


def first_party_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py of the repository outside tests/ and benchmarks/."""
    modules = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", "benchmarks") or any(p.startswith(".") for p in rel.parts):
            continue
        parts = rel.with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """First-party modules imported anywhere in ``path`` (``from pkg import sub`` counts as ``pkg.sub``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def layer(module: str) -> int | None:
    top = module.split(".")[0]
    return LAYERS.index(top) if top in LAYERS else None


def import_graph() -> dict[str, set[str]]:
    modules = first_party_modules()
    return {name: imported_modules(path, modules) - {name} for name, path in modules.items()}


def test_relative_imports_are_not_used():
    """The layer rule is checked on absolute names; a relative import would slip through."""
    relative = [str(path.relative_to(ROOT)) for path in first_party_modules().values()
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.ImportFrom) and node.level > 0]
    assert relative == []


def test_layers_import_only_downwards():
    graph = import_graph()
    assert {"vocabulary", "network", "tool", "voc12", "stages", "stages.a2gnn", "tool.graph",
            "network.graph"} <= set(graph)
    wrong, used_exceptions = [], set()
    for module, targets in graph.items():
        own = layer(module)
        if own is None:
            continue  # scripts may import any layer
        for target in targets:
            other = layer(target)
            if other is not None and (other < own or target.split(".")[0] == module.split(".")[0]):
                continue
            pair = (module, target.split(".")[0])
            if pair in KNOWN_EXCEPTIONS:
                used_exceptions.add(pair)
                continue
            wrong.append(f"{module} -> {target}")
    assert wrong == [], "imports against the layer order " + " > ".join(reversed(LAYERS))
    assert used_exceptions == KNOWN_EXCEPTIONS, f"stale exceptions: {KNOWN_EXCEPTIONS - used_exceptions}"


def test_vocabulary_imports_nothing_first_party():
    assert import_graph()["vocabulary"] == set()


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_checker_sees_a_wrong_import(tmp_path):
    """The parser resolves ``from pkg import submodule`` and imports inside functions."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from voc12 import annotations\n    import tool.graph\n")
    modules = first_party_modules()
    assert imported_modules(src, modules) == {"voc12.annotations", "tool.graph"}
