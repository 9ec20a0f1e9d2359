"""The client's commands as a person runs them: `restyle serve --port P` in a subprocess on 127.0.0.1, and
`restyle jobs/job/submit` as subprocesses on the same RESTYLE_HOME with nothing else telling them the port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from restyle.media.sample import make_clip
from testing.servers import free_port, stop_group, wait_for_port

RESTYLE = [sys.executable, "-m", "restyle.cli"]


def client_env(home: Path, **extra: str) -> dict[str, str]:
    """A shell's environment with nothing naming a server: only RESTYLE_HOME (and a default port nothing uses, so
    that 'the default' is refused, not answered by some other service on :8000)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RESTYLE_SERVER", "RESTYLE_TOKEN", "RESTYLE_PORT")}
    return env | {"RESTYLE_HOME": str(home), "RESTYLE_PORT": str(free_port())} | extra


def restyle(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RESTYLE, *args], capture_output=True, text=True, timeout=300, env=client_env(home, **extra))


def shell(home: Path, line: str) -> subprocess.CompletedProcess:
    """A pipeline through bash, as a person types it (`restyle` is this checkout's CLI)."""
    script = f'restyle() {{ {" ".join(RESTYLE)} "$@"; }}\n{line}'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300, env=client_env(home))


def assert_one_line_error(result: subprocess.CompletedProcess, *expected: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("restyle: error: "), result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


class Serve:
    """`restyle serve --port PORT` with its own home; stopped by its pid (its process group) by the fixture."""

    def __init__(self, home: Path):
        self.home, self.port = home, free_port()
        home.mkdir(parents=True, exist_ok=True)
        self.log = home / "serve.log"
        env = client_env(home) | {
            "RESTYLE_LOCAL_WORKERS": "1",
            "RESTYLE_CHUNK_SECONDS": "1",
            "RESTYLE_POLL_SECONDS": "0.3",
            "RESTYLE_IDLE_SECONDS": "0.3",
            "RESTYLE_WORKERS": "1",
        }
        self.process = subprocess.Popen(
            [*RESTYLE, "serve", "--port", str(self.port)],
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.port, 90, self.process, self.log)

    def stop(self) -> None:
        stop_group(self.process)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    serve = Serve(tmp_path_factory.mktemp("home"))
    try:
        yield serve
    finally:
        serve.stop()


@pytest.fixture(scope="module")
def waited(service, tmp_path_factory) -> subprocess.CompletedProcess:
    """`restyle submit clip --wait`: a real job run to its end by the service's worker."""
    # 640x360: long enough a job to see its progress move on a fast CPU (int8 ran 256x144 in 2 s).
    clip = make_clip(tmp_path_factory.mktemp("clip") / "walk.mp4", width=640, height=360, rate=25, seconds=8)
    return restyle(service.home, "submit", str(clip), "--style", "3", "--wait")


def test_serve_writes_its_url_into_home_and_the_client_finds_it_there(service):
    written = json.loads((service.home / "server.json").read_text())
    assert written == {"url": f"http://127.0.0.1:{service.port}", "pid": service.process.pid}
    assert service.port != 8000
    listed = restyle(service.home, "jobs")
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr == ""


def test_submit_wait_shows_progress_with_an_eta_then_the_outcome(waited):
    assert waited.returncode == 0, waited.stderr
    shown = [part.strip() for part in waited.stderr.replace("\r", "\n").splitlines() if part.strip()]
    bars = [line for line in shown if "walk.mp4" in line and "%|" in line and "frames" in line]
    midway = [line for line in bars if "100%" not in line and "/200 frames" in line]
    assert len({line.split("|")[0] for line in midway}) >= 2, waited.stderr  # the percentage moved while it ran
    assert any("running, about " in line and " left]" in line for line in midway), waited.stderr  # the service's ETA
    assert "100%" in bars[-1] and "200/200 frames" in bars[-1] and "succeeded" in bars[-1], bars[-1]
    lines = waited.stdout.splitlines()
    assert lines[0].startswith("job ") and lines[0].endswith("(styles:3)"), lines
    assert " succeeded  200/200 frames " in lines[-1] and "submitted 20" in lines[-1] and ", took " in lines[-1]


def test_submit_quiet_waits_without_a_bar(service, waited, tmp_path):
    clip = make_clip(tmp_path / "short.mp4", width=128, height=72, rate=10, seconds=1)
    quiet = restyle(service.home, "submit", str(clip), "--style", "1", "--wait", "-q")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert " succeeded  10/10 frames " in quiet.stdout.splitlines()[-1]


def test_times_are_local_with_a_hint_in_tables_and_iso_in_json(service, waited):
    job_id = waited.stdout.split()[1].rstrip(":")
    table = restyle(service.home, "jobs")
    row = next(line for line in table.stdout.splitlines() if line.startswith(job_id))
    assert " ago)" in row and "submitted 20" in row, row
    shown = json.loads(restyle(service.home, "job", job_id).stdout.split("\ndownload: ")[0])
    for field in ("created_at", "finished_at"):
        assert isinstance(shown[field], str) and shown[field][10] == "T" and shown[field][19] in "+-Z", shown
    listed = json.loads(restyle(service.home, "jobs", "--json").stdout)
    assert next(job for job in listed if job["id"] == job_id)["created_at"] == shown["created_at"]


def test_piped_output_ends_quietly(service, waited):
    job_id = waited.stdout.split()[1].rstrip(":")
    head = shell(service.home, "restyle jobs | head -1")
    assert head.returncode == 0, head.stderr
    assert len(head.stdout.splitlines()) == 1 and "Traceback" not in head.stderr, head.stderr
    # A reader that stops before the output comes (deterministic, unlike head's race with a short output):
    closed = shell(service.home, f'restyle job {job_id} | true; echo "status ${{PIPESTATUS[0]}}" >&2')
    assert "Traceback" not in closed.stderr and "BrokenPipeError" not in closed.stderr, closed.stderr
    assert closed.stderr.strip() == "status 141", closed.stderr  # what `git log | true` reports
    assert closed.returncode == 0


def test_api_refusals_and_bad_arguments_are_one_line_with_exit_2(service, tmp_path):
    clip = make_clip(tmp_path / "c.mp4", width=64, height=36, rate=5, seconds=1)
    assert_one_line_error(
        restyle(service.home, "submit", str(clip), "--strength", "5"), "422", "strength", "less than or equal to 1"
    )
    assert_one_line_error(restyle(service.home, "job", "nosuchjob"), "404", "nosuchjob")
    line = assert_one_line_error(restyle(service.home, "jobs", "--state", "bogus"), "--state", "'bogus'")
    assert all(state in line for state in ("queued", "running", "succeeded", "failed", "cancelled")), line


def test_the_error_names_the_url_it_tried_and_how_to_point_elsewhere(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "admin.token").write_text("t" * 40)
    nowhere = f"http://127.0.0.1:{free_port()}"
    for result in (
        restyle(home, "jobs", "--server", nowhere),
        restyle(home, "submit", __file__, "--wait", RESTYLE_SERVER=nowhere),
    ):
        assert_one_line_error(result, f"cannot reach the service at {nowhere}", "--server URL", "RESTYLE_SERVER")
    # A server.json left by a service killed with -9 (its pid gone) is stale: the default is tried, and named.
    gone = subprocess.Popen(["true"])
    gone.wait()
    (home / "server.json").write_text(json.dumps({"url": nowhere, "pid": gone.pid}))
    port = str(free_port())
    stale = restyle(home, "jobs", RESTYLE_PORT=port)
    assert_one_line_error(stale, f"http://127.0.0.1:{port} (from the default)", "--server URL")


def shown(home: Path, job_id: str) -> dict:
    """`restyle job ID`'s JSON."""
    result = restyle(home, "job", job_id)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.split("\ndownload: ")[0])


def test_rerun_cancel_retry_and_delete_as_a_person_types_them(service, waited, tmp_path):
    """The job page's actions from the shell: run a job's stored video again with another style (and wait for
    it), cancel a queued job and retry it, delete an ended one; a wrong state is a one-line 409."""
    import av

    job_id = waited.stdout.split()[1].rstrip(":")
    again = restyle(service.home, "rerun", job_id, "--style", "5", "--wait", "-q", "-o", str(tmp_path / "again.mp4"))
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert lines[0].endswith(f"(styles:5), the video of {job_id} again"), lines
    assert " succeeded  200/200 frames " in lines[1] and lines[2] == f"wrote {tmp_path / 'again.mp4'}", lines
    with av.open(str(tmp_path / "again.mp4")) as output:
        assert sum(1 for _ in output.decode(video=0)) == 200
    rerun_id = lines[0].split()[1].rstrip(":")
    assert_one_line_error(restyle(service.home, "job", rerun_id, "--retry"), "409", "only a failed, dead or cancelled")

    # One worker: the first job runs, the second waits in the queue and is cancelled there; then retried.
    clip = make_clip(tmp_path / "wait.mp4", width=640, height=360, rate=25, seconds=4)  # the first runs while we cancel
    first, second = (restyle(service.home, "submit", str(clip), "--style", "2") for _ in range(2))
    first_id, second_id = (result.stdout.split()[1].rstrip(":") for result in (first, second))
    cancelled = restyle(service.home, "job", second_id, "--cancel")
    assert cancelled.returncode == 0, cancelled.stderr
    deadline = time.monotonic() + 120
    while shown(service.home, second_id)["state"] != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert shown(service.home, second_id)["state"] == "cancelled"
    retried = restyle(service.home, "job", second_id, "--retry")
    assert retried.returncode == 0 and json.loads(retried.stdout.split("\ndownload: ")[0])["state"] in (
        "queued",
        "running",
    ), retried.stdout
    while shown(service.home, second_id)["state"] != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert shown(service.home, second_id)["progress"]["frames_done"] == 100

    deleted = restyle(service.home, "job", rerun_id, "--delete")
    assert deleted.returncode == 0 and deleted.stdout == f"deleted {rerun_id}\n", deleted.stderr
    assert_one_line_error(restyle(service.home, "job", rerun_id), "404", rerun_id)
    assert shown(service.home, first_id)["state"] in ("running", "succeeded")


def test_a_clean_stop_removes_the_url_it_wrote(tmp_path):
    serve = Serve(tmp_path / "home")
    try:
        deadline = time.monotonic() + 10
        while not (serve.home / "server.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert json.loads((serve.home / "server.json").read_text())["pid"] == serve.process.pid
        os.kill(serve.process.pid, signal.SIGTERM)  # as a service manager stops it
        serve.process.wait(timeout=30)
        assert not (serve.home / "server.json").exists()
    finally:
        serve.stop()
