"""The command line's structure: no import cycles between its modules, and a light `gemvec --help`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gemvec.cli

CLI = Path(gemvec.cli.__file__).parent


def cli_imports(path: Path) -> set[str]:
    """The gemvec.cli modules a file imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gemvec.cli"):
            if node.module != "gemvec.cli":
                found.add(node.module)
                continue
            for alias in node.names:  # a submodule, or a name from the package's __init__
                submodule = (CLI / f"{alias.name}.py").exists()
                found.add(f"gemvec.cli.{alias.name}" if submodule else "gemvec.cli")
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("gemvec.cli")}
    return found


def module_name(path: Path) -> str:
    return "gemvec.cli" if path.name == "__init__.py" else f"gemvec.cli.{path.stem}"


def test_no_cli_module_imports_one_that_imports_it_back() -> None:
    graph = {module_name(path): cli_imports(path) for path in CLI.glob("*.py")}
    assert "gemvec.cli.options" in graph["gemvec.cli.embed"]  # the parser sees real imports

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, set()) - seen:
            if nxt == target or reaches(nxt, target, seen | {nxt}):
                return True
        return False

    cycles = [name for name in graph if reaches(name, name, set())]
    assert not cycles, f"import cycles through {cycles}: {graph}"
    commands = [name for name in graph if name not in ("gemvec.cli", "gemvec.cli.app", "gemvec.cli.options")]
    assert all(graph[name] <= {"gemvec.cli.options"} for name in commands), graph


def test_help_does_not_import_the_heavy_modules() -> None:
    heavy = ["gemvec.store", "gemvec.tasks", "gemvec.eval", "gemvec.server", "sklearn", "faiss", "fastapi"]
    code = (
        "import sys; from gemvec.cli import app; from typer.testing import CliRunner; "
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
