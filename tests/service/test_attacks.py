"""The adversarial review's attacks on the wire (issue 12, items 2, 3, 6 and 7), against a real uvicorn on 127.0.0.1.

Each test is the attack itself: bodies with no token, bodies over the limit, over the rate,
declared huge and never sent, trickled at a byte a second, a big signed PUT while /healthz is
watched, the same single-use link PUT twice at once, and inputs that used to make 500s.
"""

from __future__ import annotations

import json
import os
import select
import socket
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlparse

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from restyle.config import Settings
from restyle.service.http.app import create_app
from testing.servers import free_port
from tests.service.test_api import ALICE, BOB, ROOT, auth

LIMIT = 1024 * 1024  # the tests' upload limit


class Live:
    """create_app under a real uvicorn in a thread: real sockets, real HTTP/1.1 parsing, stopped at the end."""

    def __init__(self, settings: Settings):
        self.port = free_port()
        self.app = create_app(settings.model_copy(update={"port": self.port}))  # its links name this port
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def settings_for(tmp_path, **overrides) -> Settings:
    values = dict(
        home=tmp_path,
        tokens=f"alice:submitter:{ALICE},bob:submitter:{BOB},root:admin:{ROOT}",
        max_upload_bytes=LIMIT,
        max_picture_bytes=LIMIT // 10,
        body_idle_seconds=2.0,
        body_grace_seconds=1.0,
        body_min_rate=1000,
        submit_rate_per_minute=60,
        submit_burst=20,
        link_seconds=300,
    )
    return Settings(**(values | overrides))


@pytest.fixture()
def live(tmp_path):
    server = Live(settings_for(tmp_path))
    yield server
    server.stop()


def head(
    method: str,
    path: str,
    length: int | None,
    token: str | None = None,
    kind: str = "application/json",
    chunked: bool = False,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {kind}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer(sock: socket.socket, timeout: float) -> tuple[int, str, float]:
    """(status, the rest of the response read so far, seconds waited); status 0 when nothing came in time."""
    sock.settimeout(timeout)
    started, data = time.monotonic(), b""
    try:
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
        sock.settimeout(0.5)
        data += sock.recv(65536)  # the body of a small answer
    except (TimeoutError, ConnectionError):
        pass
    waited = time.monotonic() - started
    if not data.startswith(b"HTTP/1.1 "):
        return 0, data.decode(errors="replace"), waited
    return int(data[9:12]), data.decode(errors="replace"), waited


def attack(live: Live, request_head: bytes, body: bytes = b"", timeout: float = 3.0) -> tuple[int, str, float]:
    with socket.create_connection(("127.0.0.1", live.port)) as sock:
        sock.sendall(request_head + body)
        return answer(sock, timeout)


MULTIPART = "multipart/form-data; boundary=xyz"


# -- item 2: auth, rate and size come from the headers, before the body ------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "declared"),
    [
        ("/api/jobs", MULTIPART, 300 * 1024**2),
        ("/api/uploads", "application/json", 200 * 1024**2),
        ("/api/events", "application/json", 50 * 1024**2),
    ],
)
def test_no_token_and_a_huge_body_is_401_before_the_body(live, path, kind, declared):
    status, text, waited = attack(live, head("POST", path, declared, kind=kind), b"--xyz\r\n" + b"a" * 1000)
    assert status == 401 and waited < 2, (status, text)
    assert "bearer token" in text and "connection: close" in text.lower()


def test_a_submitter_body_to_an_admin_route_is_refused_before_it_is_read(live):
    status, text, _ = attack(live, head("POST", "/api/events", 50 * 1024**2, ALICE), b"{")
    assert status == 403, text


def test_a_declared_length_over_the_limit_is_413_at_once(live):
    status, text, waited = attack(live, head("POST", "/api/jobs", 50 * 1024**2, ALICE, MULTIPART), b"--xyz\r\n")
    assert status == 413 and waited < 2, (status, text)
    status, text, _ = attack(live, head("POST", "/api/uploads", 2 * 1024**2, ALICE), b"{")  # JSON: 1 MiB at most
    assert status == 413, text


def test_a_declared_5_gb_body_with_a_tiny_payload_is_answered_promptly(live):
    status, text, waited = attack(live, head("POST", "/api/jobs", 5 * 1024**3, ALICE, MULTIPART), b"--xyz\r\n")
    assert status == 413 and waited < 2, (status, text)


def test_the_rate_limit_answers_before_the_body(tmp_path):
    server = Live(settings_for(tmp_path, submit_rate_per_minute=1, submit_burst=1))
    try:
        first = httpx.post(f"{server.url}/api/uploads", json={"filename": "a.mp4"}, headers=auth(ALICE))
        assert first.status_code == 201, first.text
        status, text, waited = attack(server, head("POST", "/api/jobs", LIMIT, ALICE, MULTIPART), b"--xyz\r\n")
        assert status == 429 and waited < 2 and "retry-after" in text.lower(), (status, text)
    finally:
        server.stop()


def test_an_unannounced_body_over_the_limit_is_stopped_while_it_streams(live):
    """Chunked, no length: the guard counts as it comes and answers 413 long before the 5 MB are sent."""
    with socket.create_connection(("127.0.0.1", live.port)) as sock:
        sock.sendall(head("POST", "/api/jobs", None, ALICE, MULTIPART, chunked=True))
        first = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\n' + b"\0" * 65000
        sent = stream_chunks(sock, first, 5 * LIMIT)
        status, text, _ = answer(sock, 3)
    assert status == 413, text
    assert sent < 2 * LIMIT, f"{sent} bytes were taken before the answer"


def stream_chunks(sock: socket.socket, first: bytes, limit: int, after_each: Callable[[], None] = lambda: None) -> int:
    """Send ``first``, then 64 KiB of zeros at a time, as HTTP chunks until ``limit`` bytes are sent or the server
    answers (or drops the connection); return the bytes sent. ``after_each`` runs after every chunk."""
    sent, piece = 0, first
    try:
        while sent < limit:
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            sent += len(piece)
            after_each()
            if select.select([sock], [], [], 0.05)[0]:
                break  # the server answered before the body was done
            piece = b"\0" * 65536
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


def _largest_open_file(folders: list[Path]) -> int:
    """The largest file this process (the in-thread server) holds open under ``folders``, deleted ones included:
    a multipart parser's spill is an unlinked temp file, seen only through its descriptor."""
    largest = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if any(target.startswith(str(folder)) for folder in folders):
                largest = max(largest, os.fstat(int(fd)).st_size)
        except (OSError, ValueError):
            pass  # closed meanwhile
    return largest


@pytest.mark.parametrize(
    ("path", "token"),
    [("/login", None), ("/api/uploads", ALICE), ("/api/events", ROOT), ("/api/jobs/0123abcd/cancel", ALICE)],
)
def test_a_chunked_multipart_body_to_a_route_that_takes_no_files_is_stopped_at_the_request_limit(
    tmp_path, monkeypatch, path, token
):
    """Issue 21, attack 1: 20 MB of multipart form, no Content-Length, to routes that take no files, with the embedded
    upload limit (2 GiB): the request limit (1 MiB) holds. The answer comes while the body is still being sent,
    the connection is closed, and no file over the limit ever reaches the disk."""
    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill))  # where Starlette's multipart parser spills big parts
    server = Live(settings_for(tmp_path / "home", max_upload_bytes=Settings().max_upload_bytes))
    largest, attack_size = 0, 20 * 1024**2
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(head("POST", path, None, token, MULTIPART, chunked=True))
            first = b'--xyz\r\nContent-Disposition: form-data; name="token"; filename="a.mp4"\r\n\r\n' + b"\0" * 65000

            def watch() -> None:
                nonlocal largest
                largest = max(largest, _largest_open_file([spill, tmp_path / "home" / "tmp"]))

            sent = stream_chunks(sock, first, attack_size, watch)
            status, text, _ = answer(sock, 3)
            sock.settimeout(3)
            closed = False
            try:
                while sock.recv(65536):
                    pass
                closed = True
            except ConnectionResetError:
                closed = True  # closed, with our unread body still in its buffer
            except TimeoutError:
                pass
    finally:
        server.stop()
    assert sent < 2 * LIMIT, f"{sent} bytes were taken before the answer ({status}: {text[:200]})"
    if path != "/api/jobs/0123abcd/cancel":  # that route answers from the path alone, and never reads the body
        assert status == 413 and "RESTYLE_MAX_REQUEST_BYTES" in text, (status, text)
    else:
        assert status == 404, (status, text)
    assert "connection: close" in text.lower() and closed, (
        f"the connection was kept open to read the rest: {text[:200]}"
    )
    assert largest <= LIMIT, f"the server held a {largest}-byte temp file"


@pytest.mark.parametrize("pace", ["trickle", "stall"])
def test_slow_senders_are_cut_off(live, pace):
    """A byte a second (the whole body is 1000 bytes: 17 minutes), or a few bytes and then silence:
    408, connection closed."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", live.port)) as sock:
        sock.sendall(head("POST", "/api/uploads", 1000, ALICE) + b'{"filename": ')
        status = 0
        while time.monotonic() - started < 8 and not status:
            if pace == "trickle":
                try:
                    sock.sendall(b" ")
                except (BrokenPipeError, ConnectionResetError):
                    break
            if select.select([sock], [], [], 1.0)[0]:
                status, text, _ = answer(sock, 1)
        assert status == 408, "the slow sender was not cut off"
        assert "too slowly" in text
        sock.settimeout(2)
        assert sock.recv(100) == b""  # and the connection is closed: nothing more is read from it
    assert time.monotonic() - started < 6


# -- item 3: a big signed PUT streams to the store -------------------------------------------------


def test_a_big_signed_put_streams_to_the_store_and_healthz_keeps_answering(tmp_path):
    size = 48 * 1024**2
    server = Live(settings_for(tmp_path, max_upload_bytes=64 * 1024**2, body_min_rate=0))
    try:
        link = httpx.post(f"{server.url}/api/uploads", json={"filename": "big.mp4"}, headers=auth(ALICE)).json()
        latencies, done = [], threading.Event()

        def watch() -> None:
            with httpx.Client(timeout=10) as http:
                while not done.is_set():
                    began = time.monotonic()
                    assert http.get(f"{server.url}/healthz").status_code == 200
                    latencies.append(time.monotonic() - began)
                    time.sleep(0.02)

        def body():
            block = bytes(range(256)) * 4096  # 1 MiB
            for _ in range(size // len(block)):
                yield block

        watcher = threading.Thread(target=watch)
        tracemalloc.start()
        try:
            watcher.start()
            put = httpx.put(link["upload_url"], content=body(), timeout=120)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            done.set()
            watcher.join()
        print(
            f"signed PUT of {size // 1024**2} MiB: traced peak {peak / 1024**2:.1f} MiB, "
            f"slowest /healthz {max(latencies, default=0) * 1000:.0f} ms over {len(latencies)} polls"
        )
        assert put.status_code == 200, put.text
        assert peak < 16 * 1024**2, (
            f"the upload took {peak / 1024**2:.0f} MiB of memory"
        )  # was two copies of it: 96 MiB
        assert latencies and max(latencies) < 1.0, max(latencies)
        context = server.app.state.context
        job = context.jobs.get(link["job"]["id"])
        assert job.state == "queued" and context.data.info(job.input_key).size == size
        assert list((tmp_path / "tmp").rglob("upload-*")) == []  # the spool is gone
    finally:
        server.stop()


# -- item 6: a single-use link, used twice at once ---------------------------------------------------


def test_two_concurrent_puts_with_one_link_make_one_job(live, clips):
    link = httpx.post(f"{live.url}/api/uploads", json={"filename": "once.mp4"}, headers=auth(ALICE)).json()
    url = urlparse(link["upload_url"])
    video = clips["silent"].read_bytes()
    with socket.create_connection(("127.0.0.1", live.port)) as slow:
        slow.sendall(head("PUT", f"{url.path}?{url.query}", len(video), kind="video/mp4") + video[:1000])
        time.sleep(0.3)  # the slow PUT holds the link now
        second = httpx.put(link["upload_url"], content=video)
        slow.sendall(video[1000:])
        first, text, _ = answer(slow, 10)
    assert (first, second.status_code) == (200, 409), (text, second.text)
    time.sleep(1.2)  # the trigger waits for local files to settle
    live.app.state.trigger.scan()
    jobs = httpx.get(f"{live.url}/api/jobs", headers=auth(ROOT)).json()
    assert [(j["id"], j["state"]) for j in jobs] == [(link["job"]["id"], "queued")]  # one job, no hidden second
    assert httpx.put(link["upload_url"], content=video).status_code == 409  # and the link is spent


def test_an_upload_that_failed_lets_go_of_its_link(live, clips):
    link = httpx.post(f"{live.url}/api/uploads", json={"filename": "retry.mp4"}, headers=auth(ALICE)).json()
    too_big = httpx.put(link["upload_url"], content=(b"\0" * 65536 for _ in range(40)))  # 2.5 MB, no length given
    assert too_big.status_code == 413
    assert httpx.put(link["upload_url"], content=clips["silent"].read_bytes()).status_code == 200


# -- item 7: no input makes a 5xx ------------------------------------------------------------------------


@pytest.fixture()
def raw_client(tmp_path):
    with TestClient(create_app(settings_for(tmp_path)), raise_server_exceptions=False) as client:
        yield client


def test_a_non_ascii_link_signature_is_403_not_500(raw_client):
    expires = int(time.time()) + 60
    for signature in ("é", "💥" * 10, "\u00ff" * 64):
        link = f"/files/inbox/alice/x.mp4?expires={expires}&signature={quote(signature)}"
        assert raw_client.get(link).status_code == 403
        assert raw_client.put(link, content=b"x").status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        '{"filename": "a.mp4", "strength": NaN}',
        '{"filename": "a.mp4", "deflicker": Infinity}',
        '{"filename": NaN}',
        '{"filename": "a.mp4", "style": -Infinity}',
    ],
)
def test_nan_in_a_json_body_is_422_not_500(raw_client, body):
    response = raw_client.post("/api/uploads", content=body, headers=auth(ALICE) | {"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert json.loads(response.text)["detail"]  # valid JSON, with the reason


@pytest.mark.parametrize(
    "event",
    [
        {"Records": "abc"},
        [1],
        [{"s3": "x"}],
        {"Records": [1, "x", None, {"s3": "x"}]},
        {"Records": [{"s3": {"object": "k"}}]},
        {"Records": [{"s3": {"object": {"key": 5}}}]},
        {"key": 5},
        {"key": "/buckets/data/inbox/a.mp4", "message": "x"},
        {"key": "/data/inbox/a.mp4", "message": {"new_entry": [1]}},
        "text",
        7,
        None,
    ],
)
def test_malformed_events_are_refused_or_ignored_never_500(raw_client, event):
    response = raw_client.post("/api/events", json=event, headers=auth(ROOT))
    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        assert response.json() == {"jobs": []}
