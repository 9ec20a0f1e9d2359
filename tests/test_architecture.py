"""The house's rules, checked on the installed package's own files (never on the working directory).

The floors and the web face's walls are import-linter contracts in pyproject.toml; the rest are
read off the source here: no import circle (function-local imports counted), no handler name
used outside ``handlers/``, and no function over 80 lines or module over 400 without a reason.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

import restyle
from restyle.handlers.base import registered

PACKAGE = Path(restyle.__file__).parent
REPO = PACKAGE.parent
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 400
REASON = "long because"  # what a docstring says to keep a long function or module (then why)


def sources() -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50, f"found only {len(files)} files under {PACKAGE}"
    return files


def test_the_import_contracts_hold():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    done = subprocess.run(
        [lint, "--config", str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " broken" in done.stdout and "0 broken" in done.stdout, done.stdout[-2000:]


def _circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), over every import grimp sees."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph.find_modules_directly_imported_by(module):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_there_is_no_import_circle_even_through_function_local_imports():
    graph = grimp.build_graph("restyle")  # grimp reads imports inside functions too
    assert len(graph.modules) > 50
    assert _circles(graph) == []


def test_a_circle_would_be_seen():
    graph = grimp.build_graph("restyle")
    graph.add_import(importer="restyle.errors", imported="restyle.pipeline")  # errors is the floor: now a circle
    assert _circles(graph), "the circle finder missed a circle through the lowest floor"


def _dispatch_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants that are not docstrings, with their line numbers."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


# Where a handler's name may stand outside handlers/, and why: the JobSpec's default model (a value, not a
# dispatch), and the CLI's `restyle styles` command, which lists the styles (a command's name, not the handler's).
ALLOWED_NAMES = {("jobspec.py", "styles"), ("cli/parser.py", "styles")}


def test_no_handler_name_is_used_outside_handlers():
    names = set(registered())
    assert {"styles", "style-image", "onnx", "yolo"} <= names
    found = []
    for path in sources():
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "handlers":
            continue
        for line, value in _dispatch_strings(ast.parse(path.read_text(), str(path))):
            if value in names and (relative.as_posix(), value) not in ALLOWED_NAMES:
                found.append(f"{relative}:{line} {value!r}")
    assert found == []


def test_the_name_rule_sees_a_name():
    tree = ast.parse('"""doc: styles"""\nif kind == "yolo":\n    pass\n')
    assert [value for _, value in _dispatch_strings(tree)] == ["yolo"]


def _long_functions(tree: ast.AST) -> list[tuple[str, int]]:
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
        and REASON not in (ast.get_docstring(node) or "").lower()
    ]


def test_no_function_over_80_lines_and_no_module_over_400_without_a_reason():
    found = []
    for path in sources():
        text = path.read_text()
        tree = ast.parse(text, str(path))
        relative = path.relative_to(PACKAGE)
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES and REASON not in (ast.get_docstring(tree) or "").lower():
            found.append(f"{relative}: {lines} lines")
        found += [f"{relative}: {name}() {length} lines" for name, length in _long_functions(tree)]
    assert found == []
