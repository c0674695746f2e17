"""The doorbell's events live in a leaf module, so the backend's imports have no cycle
(consumers -> services -> delivery -> hub -> consumers was one)."""

from __future__ import annotations

import ast
import subprocess
import sys
import typing
from pathlib import Path

from backend.notifications import events

REPO = Path(__file__).resolve().parents[3]
BACKEND = REPO / "backend"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every backend module ``path`` imports, wherever the import statement is (in a
    function, under TYPE_CHECKING): a lazy import hides a cycle, it does not break it."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, base] if base else parents)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if module in modules and module != name}


def _import_graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in BACKEND.rglob("*.py")}
    modules = set(paths)
    return {name: _imports(path, modules) for name, path in paths.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph``, as a path, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                return [*path[path.index(imported) :], imported]
            if imported not in state and (found := visit(imported)) is not None:
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)) is not None:
            return found
    return None


def test_the_backend_has_no_import_cycle():
    graph = _import_graph()
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_the_cycle_there_was():
    graph = _import_graph()
    # The edge the hub had (a TYPE_CHECKING import of the consumer), put back.
    graph["backend.notifications.hub"].add("backend.notifications.consumers")
    graph["backend.notifications.delivery"].add("backend.notifications.hub")
    assert _cycle(graph) is not None


def test_events_is_a_leaf():
    graph = _import_graph()
    assert graph["backend.notifications.events"] == set()
    hub_reaches = set()
    todo = ["backend.notifications.hub"]
    while todo:
        for module in graph[todo.pop()]:
            if module not in hub_reaches:
                hub_reaches.add(module)
                todo.append(module)
    assert "backend.notifications.consumers" not in hub_reaches
    assert "backend.notifications.services" not in hub_reaches


def _loaded_after(code: str, module: str) -> bool:
    """Whether ``module`` is loaded after running ``code`` in a fresh interpreter."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, django\ndjango.setup()\n{code}\nprint({module!r} in sys.modules)",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1] == "True"


def test_ringing_the_doorbell_does_not_load_the_hub():
    # The ring of a process with no server (the notify command) used to import the hub.
    ring = (
        "from backend.notifications import delivery\n"
        "delivery.ring({'kind': 'user_disabled', 'user_id': 1})"
    )
    assert not _loaded_after(ring, "backend.notifications.hub")


def test_the_hub_does_not_load_the_consumer():
    assert not _loaded_after("import backend.notifications.hub", "backend.notifications.consumers")
    assert _loaded_after(
        "import backend.notifications.consumers", "backend.notifications.hub"
    )  # the check itself sees a module that is loaded


def test_every_kind_has_a_type():
    typed = {
        typing.get_args(typing.get_type_hints(event_type)["kind"])[0]
        for event_type in (
            events.NotificationEvent,
            events.ReadStateEvent,
            events.UserDisabledEvent,
            events.SessionsEndedEvent,
            events.MembershipRemovedEvent,
            events.PresenceEvent,
            events.AttentionEvent,
        )
    }
    assert typed == events.KINDS
    assert len(typed) == 7
