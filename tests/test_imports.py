"""The package's import graph: services never reach up into ``vize.jobs``, and ``vize.jobs``
has no import cycle. Every import counts, those inside functions included (the AST of each
module, not what happens to be imported at run time)."""

from __future__ import annotations

import ast
from pathlib import Path

import vize

ROOT = Path(vize.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    """The vize modules ``path`` imports (``from a import b`` counts a.b when that is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in out if m == "vize" or m.startswith("vize.")}


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: _imports(p, name) & modules.keys() for name, p in modules.items()}


def _cycle(graph: dict[str, set[str]], nodes: set[str]) -> list[str] | None:
    """One import cycle among ``nodes``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node] & nodes):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(nodes):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_function_level_imports() -> None:
    graph = import_graph()
    # ``CeleryRunner`` imports the Celery app inside its __init__ (celery loads only on use).
    assert "vize.jobs.celery_app" in graph["vize.jobs.runners"]
    assert "vize.services.jobstore" in graph["vize.jobs.executor"]


def test_services_do_not_import_jobs() -> None:
    graph = import_graph()
    upward = {
        (name, dep)
        for name, deps in graph.items()
        if name.startswith("vize.services")
        for dep in deps
        if dep == "vize.jobs" or dep.startswith("vize.jobs.")
    }
    assert upward == set()


def test_jobs_has_no_import_cycle() -> None:
    graph = import_graph()
    jobs = {name for name in graph if name == "vize.jobs" or name.startswith("vize.jobs.")}
    assert _cycle(graph, jobs) is None


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle(graph, set(graph)) == ["a", "b", "c", "a"]
    assert _cycle(graph, {"a", "b", "d"}) is None
