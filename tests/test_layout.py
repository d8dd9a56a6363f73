"""The house drawn from the imports: every lrcn module's imports (top-level and inside functions,
read with ast) form no circle; the library folders import no command and not the cli; a command
imports no other command except the shared helpers (lrcn.commands.options) and lrcn.commands.demo's
use of lrcn.commands.evaluate (the demo runs what `lrcn evaluate` runs)."""

from __future__ import annotations

import ast
from pathlib import Path

import lrcn

ROOT = Path(lrcn.__file__).parent
LIBRARY = ("data", "models", "decoding", "metrics", "train", "report")
SHARED = {"lrcn.commands.options"}
ALLOWED = {("lrcn.commands.demo", "lrcn.commands.evaluate")}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = ["lrcn", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set[str], root: Path = ROOT) -> set[str]:
    """The lrcn modules ``path`` imports anywhere in it (``from lrcn.x import y`` counts as lrcn.x.y
    when that is a module, else lrcn.x; relative imports resolved)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            out |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    return {m for m in out if m in modules and m != name}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    return {name: imports(path, set(files), root) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, as one module path from a module back to itself (depth-first)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_the_circle_check_sees_a_circle_hidden_in_a_function(tmp_path):
    """A deliberately introduced circle (models.decoders importing models.registry inside a function,
    as build_decoder once did with temporal) is found."""
    copy = tmp_path / "lrcn"
    for p in ROOT.rglob("*.py"):
        (copy / p.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        (copy / p.relative_to(ROOT)).write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    decoders = copy / "models" / "decoders.py"
    decoders.write_text(decoders.read_text(encoding="utf-8") +
                        "\n\ndef kinds():\n    from lrcn.models.registry import DECODERS\n    return DECODERS\n")
    found = cycles(import_graph(copy))
    assert found and {"lrcn.models.decoders", "lrcn.models.registry"} <= set(found[0])


def test_library_folders_import_no_command_and_no_cli():
    graph = import_graph()
    bad = {(m, t) for m, targets in graph.items() for t in targets
           if m.split(".")[1] in LIBRARY and (t.startswith("lrcn.commands") or t == "lrcn.cli")}
    assert bad == set()


def test_the_top_level_modules_import_no_command_and_only_cli_imports_them_all():
    graph = import_graph()
    top = {m for m in graph if m.count(".") == 1 and not m.startswith("lrcn.commands")} - {"lrcn.cli"}
    assert {(m, t) for m in top for t in graph[m] if t.startswith("lrcn.commands") or t == "lrcn.cli"} == set()
    assert {m for m, targets in graph.items() if "lrcn.cli" in targets} == set()


def test_commands_import_no_other_command_but_the_shared_helpers():
    graph = import_graph()
    commands = {m for m in graph if m.startswith("lrcn.commands.")}
    crossing = {(m, t) for m in commands for t in graph[m]
                if t in commands and t not in SHARED and (m, t) not in ALLOWED}
    assert crossing == set()
    assert all(not (graph[s] & commands) for s in SHARED)        # the shared helpers import no command
