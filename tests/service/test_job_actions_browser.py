"""The job page's actions pressed in a real headless Chromium, as a person would, on a real `restyle serve`
(embedded defaults, the real model), each checked by what really happened (issue 27, finding 1):

- Cancel on a running job stops it; the page turns to cancelled by itself; the chunks it stored are kept, and
  Retry on the page runs the job to its end without scoring them again.
- Run again on a succeeded job, with another style: a new job of the video already stored (the browser sends no
  video; the store holds the same file under the new job's key) with another output.
- Delete: back on the list, the job gone from it and from the API, its output, stills, log and input too.
- Each button only in the states it applies to (queued, running, succeeded, failed, cancelled), as the API's
  ``actions`` say; Cancel on a queued job ends it at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from contextlib import contextmanager

import pytest

from restyle.media.sample import make_clip
from restyle.service import keys
from tests.service import test_dashboard
from tests.service.conftest import Service
from tests.service.test_dashboard import wait_until
from tests.service.test_job_page import signed_in, submit, worker

pytestmark = pytest.mark.slow
browser = test_dashboard.browser  # the same headless Chromium

# What a person may press on the page, by its element, and in which state of the job (restyle.service.actions).
BUTTONS = {"cancel": "#cancel", "retry": "#retry", "rerun": "#rerun-box summary", "delete": "#delete"}
SHOWN = {
    "queued": {"cancel", "rerun"},
    "running": {"cancel", "rerun"},
    "succeeded": {"rerun", "delete"},
    "failed": {"retry", "rerun", "delete"},
    "cancelled": {"retry", "rerun", "delete"},
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One `restyle serve` and one `restyle worker` (its own process group) for the tests that run jobs: the
    worker warms up once."""
    service = Service(tmp_path_factory.mktemp("actions") / "home", {"RESTYLE_CHUNK_SECONDS": "0.5"}, local_workers=0)
    try:
        with worker(service) as process:
            yield service, process
    finally:
        service.stop()


@pytest.fixture()
def service(served):
    return served[0]


@pytest.fixture(scope="module")
def chunked_clip(tmp_path_factory):
    """4 s at 24 fps, 320x180: 8 chunks of half a second (RESTYLE_CHUNK_SECONDS=0.5), time to cancel midway."""
    return make_clip(tmp_path_factory.mktemp("chunked") / "chunked.mp4", width=320, height=180, rate=24, seconds=4)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    """1 s, 24 frames, 320x180: a job that ends in a few seconds."""
    root = tmp_path_factory.mktemp("short")
    return make_clip(root / "short.mp4", width=320, height=180, rate=24, seconds=1, audio=False)


def assert_buttons(page, service, job_id: str, state: str) -> None:
    """The page shows ``state`` and exactly the buttons that apply to it, which are the API's ``actions``."""
    assert page.text_content("#state") == state
    shown = {name for name, selector in BUTTONS.items() if page.locator(selector).is_visible()}
    assert shown == SHOWN[state], (state, shown)
    assert set(service.http.get(f"/api/jobs/{job_id}").json()["actions"]) == shown


def job_log(service, job_id: str) -> list[dict]:
    answer = service.http.get(f"/api/jobs/{job_id}/log")
    assert answer.status_code == 200, answer.text
    return [json.loads(line) for line in answer.text.splitlines() if line.strip()]


def output_digest(service, job_id: str) -> str:
    answer = service.http.get(f"/api/jobs/{job_id}/output/media")
    assert answer.status_code == 200 and answer.content, answer.status_code
    return hashlib.sha256(answer.content).hexdigest()


def first_chunk_stored(service, job_id: str, timeout_s: float = 120) -> None:
    """Until the job's first finished chunk is in its work area (looked at every 10 ms)."""
    work = service.home / "system" / keys.work(job_id)
    deadline = time.monotonic() + timeout_s
    while not any(work.rglob("*.mp4")):
        assert time.monotonic() < deadline, f"no chunk stored after {timeout_s:.0f} s"
        time.sleep(0.01)


@contextmanager
def held(process, longest_s: float = 8.0):
    """The worker's processes stopped (SIGSTOP) for the block: the job stays where it is while a person acts,
    however fast this machine scores. Let go after ``longest_s`` whatever happens: a worker stopped inside a
    write to the job database holds its lock, and the service's own write waits for it (busy_timeout 10 s)."""
    os.killpg(process.pid, signal.SIGSTOP)
    timer = threading.Timer(longest_s, os.killpg, (process.pid, signal.SIGCONT))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        os.killpg(process.pid, signal.SIGCONT)


def frames_line(page) -> str:
    return " ".join(page.text_content("#frames").split())


def test_cancel_a_running_job_keeps_its_chunks_and_retry_does_not_score_them_again(served, browser, chunked_clip):
    service, process = served
    job = submit(service, chunked_clip, style="7")
    page = signed_in(browser, service)
    page.goto(f"{service.url}/jobs/{job['id']}")
    first_chunk_stored(service, job["id"])
    # The worker is held from its first stored chunk until Cancel has been pressed: on a fast machine the job
    # would otherwise end before the page (which polls) and the worker (which hears of a cancel on its
    # heartbeat) have had time to act. Nothing else of the run is changed.
    with held(process):
        page.reload()  # the buttons as a running job's page is served
        assert_buttons(page, service, job["id"], "running")
        page.click("#cancel")
        page.wait_for_url(f"{service.url}/jobs/{job['id']}")  # back on its page, no error
        assert page.locator("#error").count() == 0
        assert page.text_content("#state") == "running"  # it stops at the worker's next frame batch
    # No reload by the person: the page sees the job end and shows it.
    page.wait_for_selector("#state.cancelled", timeout=60_000)
    cancelled = service.http.get(f"/api/jobs/{job['id']}").json()
    kept = cancelled["progress"]["chunks_done"]
    assert cancelled["state"] == "cancelled" and 1 <= kept < 8, cancelled
    print(f"cancel: {kept} of 8 chunks kept")
    assert f"its {kept} finished chunks are kept" in cancelled["reason"]
    assert f"its {kept} finished chunks are kept" in page.text_content("#reason")
    stored = sorted(p.name for p in (service.home / "system" / keys.work(job["id"])).rglob("*.mp4"))
    assert len(stored) == kept, stored  # still in the store, for the retry
    assert_buttons(page, service, job["id"], "cancelled")

    page.click("#retry")
    page.wait_for_url(f"{service.url}/jobs/{job['id']}")
    assert page.locator("#error").count() == 0
    assert page.text_content("#state") in ("queued", "running")  # queued again at once
    page.wait_for_selector("#state.succeeded", timeout=180_000)
    done = service.http.get(f"/api/jobs/{job['id']}").json()
    assert done["state"] == "succeeded" and done["figures"]["frames"] == 96, done
    assert done["figures"]["chunks_reused"] == kept and done["chunks_redone"] == 0
    assert frames_line(page).startswith("96/96 frames, 8/8 chunks")
    assert_buttons(page, service, job["id"], "succeeded")
    # The log: the second attempt planned with the kept chunks and scored only the others, each once.
    lines = job_log(service, job["id"])
    claims = [n for n, line in enumerate(lines) if line["event"] == "claimed"]
    assert len(claims) == 2, [line["event"] for line in lines]
    first = [line["chunk"] for line in lines[: claims[1]] if line["event"] == "chunk"]
    second = [line["chunk"] for line in lines[claims[1] :] if line["event"] == "chunk"]
    planned = [line for line in lines[claims[1] :] if line["event"] == "planned"]
    assert planned and planned[0]["reused"] == kept
    assert len(first) == kept and not set(first) & set(second) and sorted(first + second) == list(range(8))


def test_run_again_with_another_style_uploads_nothing_and_makes_another_output(service, browser, short_clip):
    first = submit(service, short_clip, style="7")
    assert service.wait_for(first["id"])["state"] == "succeeded"
    page = signed_in(browser, service)
    page.goto(f"{service.url}/jobs/{first['id']}")
    assert_buttons(page, service, first["id"], "succeeded")

    page.click("#rerun-box summary")
    assert page.input_value("#rerun select[name=style]") == "7"  # the job's own, to change
    page.select_option("#rerun select[name=style]", "12")
    sent = []
    page.on("request", lambda request: sent.append(request))  # (Playwright takes no bound built-in)
    page.click("#rerun-submit")
    page.wait_for_url(lambda url: "/jobs/" in url and first["id"] not in url)
    new_id = page.url.rsplit("/", 1)[-1]

    # The browser sent the form and no video: one small POST whose only file part is the empty painting field.
    posts = [request for request in sent if request.method == "POST"]
    assert [request.url for request in posts] == [f"{service.url}/jobs/{first['id']}/rerun"]
    body = posts[0].post_data_buffer or b""
    assert len(body) < 2_000 < short_clip.stat().st_size, len(body)
    assert body.count(b"filename=") == 1 and b'name="style_image"; filename=""' in body

    page.wait_for_selector("#state.succeeded", timeout=180_000)
    wait_until(page, "document.querySelector('#player').readyState >= 1", 30)  # its output plays in the page
    again = service.http.get(f"/api/jobs/{new_id}").json()
    assert again["state"] == "succeeded" and again["style"] == "12" and again["input"] == first["input"]
    assert [job["id"] for job in service.http.get("/api/jobs").json()][:2] == [new_id, first["id"]]  # newest first
    # The same stored video: the new job's input is a key of its own, the same file on disk (a hard link).
    first_key = next(line["input"] for line in job_log(service, first["id"]) if line["event"] == "claimed")
    log = job_log(service, new_id)
    new_key = next(line["input"] for line in log if line["event"] == "claimed")
    origin = next(line for line in log if line["event"] == "run again")
    assert origin["of"] == first["id"] and origin["input"] == first_key
    data = service.home / "data"
    assert new_key != first_key and os.stat(data / new_key).st_ino == os.stat(data / first_key).st_ino
    assert output_digest(service, new_id) != output_digest(service, first["id"])  # another style, another output
    assert service.http.get(f"/api/jobs/{first['id']}").json()["state"] == "succeeded"  # the first is left as it was


def test_delete_from_the_page_removes_the_job_and_its_files(service, browser, short_clip):
    job = submit(service, short_clip, style="7")
    assert service.wait_for(job["id"])["state"] == "succeeded"
    output_digest(service, job["id"])  # there is an output to remove
    input_key = next(line["input"] for line in job_log(service, job["id"]) if line["event"] == "claimed")
    files = [
        service.home / "data" / input_key,
        service.home / "data" / keys.job_outbox(job["id"]),
        service.home / "system" / keys.stills(job["id"]),
        service.home / "system" / keys.log(job["id"]),
    ]
    assert all(path.exists() for path in files), [str(path) for path in files if not path.exists()]

    page = signed_in(browser, service)
    page.goto(f"{service.url}/jobs/{job['id']}")
    assert_buttons(page, service, job["id"], "succeeded")
    page.on("dialog", lambda dialog: dialog.dismiss())  # no script dialog: the page itself asks
    page.click("#delete")  # opens the box that asks; nothing is deleted yet
    assert page.is_visible("#delete-confirm") and "cannot be undone" in page.text_content("#delete-box")
    assert service.http.get(f"/api/jobs/{job['id']}").status_code == 200 and all(path.exists() for path in files)
    page.click("#delete-confirm")
    page.wait_for_url(f"{service.url}/")  # back on the list
    page.wait_for_selector("#jobs")
    assert page.locator(f"tr[data-id='{job['id']}']").count() == 0
    assert service.http.get(f"/api/jobs/{job['id']}").status_code == 404
    assert service.http.get(f"/api/jobs/{job['id']}/output/media").status_code == 404
    assert [str(path) for path in files if path.exists()] == []
    assert job["id"] not in [shown["id"] for shown in service.http.get("/api/jobs").json()]


def test_each_button_only_where_it_applies_cancel_of_a_queued_job_and_retry_of_a_failed_one(
    start_service, service, browser, tmp_path, short_clip
):
    idle = start_service(local_workers=0)  # a service without workers: its jobs stay queued
    waiting = submit(idle, short_clip, style="7")
    page = signed_in(browser, idle)
    page.goto(f"{idle.url}/jobs/{waiting['id']}")
    assert_buttons(page, idle, waiting["id"], "queued")
    page.click("#cancel")  # a queued job ends at once
    page.wait_for_url(f"{idle.url}/jobs/{waiting['id']}")
    assert page.locator("#error").count() == 0
    assert_buttons(page, idle, waiting["id"], "cancelled")
    assert idle.http.get(f"/api/jobs/{waiting['id']}").json()["progress"]["chunks_done"] == 0

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video at all" * 100)
    failing = submit(service, bad, style="7")
    page = signed_in(browser, service)
    page.goto(f"{service.url}/jobs/{failing['id']}")
    page.wait_for_selector("#state.failed", timeout=120_000)  # the page reloads itself when the job ends
    assert_buttons(page, service, failing["id"], "failed")
    reason = page.text_content("#reason").strip()
    assert reason and page.is_visible("#reason")
    page.click("#retry")  # it runs again, with its attempts afresh, and fails again for the same reason
    page.wait_for_url(f"{service.url}/jobs/{failing['id']}")
    assert page.locator("#error").count() == 0
    page.wait_for_selector("#state.failed", timeout=120_000)
    assert page.text_content("#reason").strip() == reason
    assert page.text_content("#attempt") == "attempt 1 of 3"
    assert [line["event"] for line in job_log(service, failing["id"])].count("failed") == 2
