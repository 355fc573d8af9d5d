"""The import layers of the design card, checked on what is really loaded.

The agent runs on machines that have nothing but Python: its entry module, imported in a
fresh interpreter, may load only the standard library, its own package, the stdlib-only
wire layer and the `netjobs_core` package itself (for `__version__`). What is pulled in
indirectly counts, which is why this imports instead of reading import statements.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# What the interpreter loaded before the import (site, and this venv's .pth hooks such as
# setuptools' _distutils_hack or an editable install's finder) is not the module's doing.
_LOADED = (
    "import json, sys; before = set(sys.modules); import {module}; "
    "print(json.dumps(sorted(set(sys.modules) - before)))"
)


def loaded_by(module: str) -> list[str]:
    """The modules that importing MODULE loads, in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-I", "-c", _LOADED.format(module=module)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO.parent,  # -I leaves the current folder off sys.path anyway
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _is_stdlib(name: str) -> bool:
    return name.split(".")[0] in sys.stdlib_module_names or name in sys.builtin_module_names


def _agent_may_load(name: str) -> bool:
    return (
        _is_stdlib(name)
        or name == "netjobs_core"
        or name == "netjobs_core.wire"
        or name.startswith(("netjobs_core.wire.", "netjobs_agent"))
    )


def test_the_agent_loads_only_the_standard_library_and_the_wire_layer():
    loaded = loaded_by("netjobs_agent.__main__")
    assert "netjobs_agent.server" in loaded
    # The protocol's modules are all seen to load, so the check below covers each of them.
    protocol = ("errors", "framing", "messages", "sealing", "states", "connection")
    assert {f"netjobs_core.wire.{name}" for name in protocol} <= set(loaded)
    foreign = [name for name in loaded if not _agent_may_load(name)]
    assert foreign == [], f"the agent must stay stdlib-only, but loads {foreign}"


def test_the_import_check_sees_indirect_imports():
    # The check above is only as good as its view: importing the CLI must show
    # ClusterShell, which no agent module names but the CLI pulls in through
    # netjobs_core.config and netjobs_core.nodesets.
    loaded = loaded_by("netjobs_core.cli")
    assert "ClusterShell.NodeSet" in loaded and "netjobs_core.report" in loaded
    assert not _agent_may_load("ClusterShell") and not _agent_may_load("netjobs_core.report")
    # rich draws a terminal's live display only: a run into a file or a pipe (a script's,
    # a benchmark's) does not pay its import (~25 ms of a cold start).
    assert "rich" not in loaded


_IMPORTS_SCRIPT = """
import ast, json, sys
found = {}
for path in sys.argv[1:]:
    names = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    found[path] = sorted(names)
print(json.dumps(found))
"""


def _imports(paths: list[Path]) -> dict[Path, set[str]]:
    """What each file imports by name. Parsed in a fresh interpreter: CPython 3.11's
    ast module keeps one recursion counter per interpreter, and a thread left by an
    earlier test that imports a module (pytest rewrites asserts with ast) can make
    ast.parse here fail with "AST constructor recursion depth mismatch"."""
    out = subprocess.run(
        [sys.executable, "-I", "-c", _IMPORTS_SCRIPT, *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return {Path(path): set(names) for path, names in json.loads(out).items()}


def _python_files(*folders: str) -> list[Path]:
    return [path for folder in folders for path in sorted((REPO / folder).rglob("*.py"))]


def test_nothing_outside_the_gui_imports_the_gui():
    gui_own = {
        REPO / "build_scripts" / "entry" / "launch_gui.py",  # the GUI's own entry
        REPO / "bench" / "gui_overview.py",  # measures the GUI's event loop
    }
    paths = _python_files("netjobs_core", "agent", "build_scripts", "bench")
    for path, names in _imports([p for p in paths if p not in gui_own]).items():
        gui = {name for name in names if name.split(".")[0] == "netjobs_gui"}
        assert not gui, f"{path.relative_to(REPO)} imports {sorted(gui)}"


def test_the_core_never_imports_qt():
    qt = {"PySide6", "shiboken6", "qasync"}
    for path, names in _imports(_python_files("netjobs_core", "agent")).items():
        found = {name for name in names if name.split(".")[0] in qt}
        assert not found, f"{path.relative_to(REPO)} imports {sorted(found)}"
    # ... nor loads it indirectly.
    loaded = loaded_by("netjobs_core.cli, netjobs_core.demo, netjobs_core.results_json")
    assert not [name for name in loaded if name.split(".")[0] in qt]


def _import_graph() -> dict[str, set[str]]:
    """Each of our modules -> ours it imports (type-only imports included: a circle
    drawn only for the type checker is still two modules that cannot be read apart)."""
    folders = {
        "netjobs_core": "netjobs_core",
        "netjobs_agent": "agent",
        "netjobs_gui": "netjobs_gui",
    }
    files: dict[str, Path] = {}
    for package, folder in folders.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = [package, *path.relative_to(REPO / folder).with_suffix("").parts]
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        named: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                named.update(
                    f"{node.module}.{alias.name}"
                    if f"{node.module}.{alias.name}" in files
                    else node.module
                    for alias in node.names
                )
            elif isinstance(node, ast.Import):
                named.update(alias.name for alias in node.names)
        graph[module] = {name for name in named if name in files and name != module}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                circles.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def test_no_module_imports_one_that_imports_it_back():
    graph = _import_graph()
    assert "netjobs_core.runner" in graph["netjobs_core.run"]  # the graph sees imports
    assert _circles(graph) == []


def test_the_circle_check_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
