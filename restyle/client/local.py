"""Where the client finds a service: ``--server``, else ``RESTYLE_SERVER``, else the URL the local
``restyle serve`` wrote into its home (``server.json``), else the settings' default (http://host:port).

``restyle serve`` writes ``server.json`` (its URL and pid) when it starts and removes it on a clean stop; a file
whose pid is gone (a service killed with -9) is stale and ignored."""

from __future__ import annotations

import json
import os
from pathlib import Path

from restyle.config import Settings

SERVER_FILE = "server.json"


def local_url(host: str, port: int) -> str:
    """The URL a client on this machine reaches a service bound to ``host``:``port`` at (any address -> loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def write_server_file(home: Path, url: str, pid: int | None = None) -> Path:
    """Tell clients on this machine where this service listens (written whole, then renamed into place)."""
    path = home / SERVER_FILE
    home.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{SERVER_FILE}.{os.getpid()}")
    part.write_text(json.dumps({"url": url, "pid": pid or os.getpid()}) + "\n")
    part.replace(path)
    return path


def remove_server_file(home: Path, pid: int | None = None) -> None:
    """Remove the file if it is still this process's (another service on the same home may have written its own)."""
    path = home / SERVER_FILE
    if _read(path).get("pid") == (pid or os.getpid()):
        path.unlink(missing_ok=True)


def running_server(home: Path) -> str | None:
    """The URL a running local service wrote, or None (no file, an unreadable one, or its process is gone)."""
    found = _read(home / SERVER_FILE)
    url, pid = found.get("url"), found.get("pid")
    if not isinstance(url, str) or not url or not isinstance(pid, int) or not _alive(pid):
        return None
    return url


def server_url(settings: Settings, server: str | None = None) -> tuple[str, str]:
    """The service's URL and where it came from, in words (for an error that says how to point elsewhere)."""
    if server:
        return server, "--server"
    if os.environ.get("RESTYLE_SERVER"):
        return os.environ["RESTYLE_SERVER"], "RESTYLE_SERVER"
    written = running_server(settings.home)
    if written:
        return written, f"{settings.home / SERVER_FILE}, written by `restyle serve`"
    return settings.base_url, "the default"


def _read(path: Path) -> dict:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
