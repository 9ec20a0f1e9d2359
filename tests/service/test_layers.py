"""The service's floors: FastAPI and Starlette only in service/http; store keys only in service/keys.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import restyle

PACKAGE = Path(restyle.__file__).parent


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_web_face_imports_fastapi_or_starlette():
    files = list(PACKAGE.rglob("*.py"))
    assert len(files) > 40
    web = PACKAGE / "service" / "http"
    offenders = [
        str(p.relative_to(PACKAGE)) for p in files if web not in p.parents and _imports(p) & {"fastapi", "starlette"}
    ]
    assert offenders == []


def test_store_keys_are_spelled_only_in_keys_py():
    literal = re.compile(r"""["'](logs|stills|outbox|inbox|work|models|pictures|gallery)/""")
    files = [p for p in (PACKAGE / "service").rglob("*.py") if p.name != "keys.py"]
    offenders = [
        f"{p.relative_to(PACKAGE)}:{n}"
        for p in files
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert offenders == []
