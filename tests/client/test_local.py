"""Where the client looks for the service: --server > RESTYLE_SERVER > the URL `restyle serve` wrote > the default."""

from __future__ import annotations

import json
import os
import subprocess

from restyle.client.local import local_url, remove_server_file, running_server, server_url, write_server_file
from restyle.config import Settings


def test_the_precedence_of_where_the_service_is(tmp_path, monkeypatch):
    monkeypatch.delenv("RESTYLE_SERVER", raising=False)
    settings = Settings(home=tmp_path, port=8123)
    assert server_url(settings) == ("http://127.0.0.1:8123", "the default")
    write_server_file(tmp_path, "http://127.0.0.1:8765")  # this process is alive: the file holds
    assert server_url(settings)[0] == "http://127.0.0.1:8765"
    monkeypatch.setenv("RESTYLE_SERVER", "http://env:1")
    assert server_url(settings) == ("http://env:1", "RESTYLE_SERVER")
    assert server_url(settings, "http://flag:2") == ("http://flag:2", "--server")


def test_a_file_whose_process_is_gone_or_that_is_garbage_is_ignored(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()
    write_server_file(tmp_path, "http://127.0.0.1:8765", pid=gone.pid)
    assert running_server(tmp_path) is None
    for text in ("{", "[]", json.dumps({"url": 5, "pid": os.getpid()}), json.dumps({"url": "http://x"})):
        (tmp_path / "server.json").write_text(text)
        assert running_server(tmp_path) is None, text


def test_only_the_writer_removes_the_file(tmp_path):
    write_server_file(tmp_path, "http://127.0.0.1:8765", pid=os.getpid() + 100000)  # another service's
    remove_server_file(tmp_path)
    assert (tmp_path / "server.json").is_file()
    write_server_file(tmp_path, "http://127.0.0.1:8765")
    remove_server_file(tmp_path)
    assert not (tmp_path / "server.json").exists()


def test_any_address_is_reached_on_loopback():
    assert local_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert local_url("::", 8000) == "http://[::1]:8000"
    assert local_url("10.0.0.5", 80) == "http://10.0.0.5:80"
