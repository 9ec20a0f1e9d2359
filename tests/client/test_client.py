"""The client is not server code: `restyle submit` must not pull in SQLAlchemy, fsspec or FastAPI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import restyle
from restyle.client.client import _local_admin_token
from restyle.config import Settings


def test_the_client_imports_no_server_code():
    check = (
        "import sys, restyle.client.commands, restyle.client.client; "
        "server = [m for m in ('sqlalchemy', 'fsspec', 'fastapi', 'starlette', 'restyle.service')"
        " if m in sys.modules]; assert not server, server"
    )
    root = str(Path(restyle.__file__).parent.parent)
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr


def test_the_client_reads_the_local_services_admin_token(tmp_path):
    from restyle.service.context import admin_token

    settings = Settings(home=tmp_path / "home")
    made = admin_token(settings)  # what `restyle serve` writes on first start
    assert _local_admin_token(settings) == made
