"""The job page in a real headless Chromium, in each state: queued (its place in the queue), running (its fields
change without a reload), succeeded (a video that plays and seeks, the still strip, the painting), failed and
cancelled; times shown as local time from ISO 8601."""

from contextlib import ExitStack, contextmanager

import pytest

from restyle.media.sample import make_clip
from testing.servers import stop_group
from tests.service import test_dashboard
from tests.service.test_dashboard import wait_until

pytestmark = pytest.mark.slow
browser = test_dashboard.browser  # the same headless Chromium


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """Long enough (8 s, 192 frames, 8 chunks) to be seen running for a few page refreshes."""
    return make_clip(tmp_path_factory.mktemp("long") / "long.mp4", width=320, height=180, rate=24, seconds=8)


@contextmanager
def worker(service):
    process = service.worker()
    try:
        yield process
    finally:
        stop_group(process)


def signed_in(browser, service):
    page = browser.new_page()
    page.goto(service.url + "/login")
    page.fill("input[name=token]", service.token)
    page.click("button[type=submit]")
    page.wait_for_selector("form.submit")
    return page


def submit(service, clip, painting=None, **fields) -> dict:
    with ExitStack() as opened:
        files = {"file": ("clip.mp4", opened.enter_context(open(clip, "rb")), "video/mp4")}
        if painting:
            files["style_image"] = ("painting.jpg", opened.enter_context(open(painting, "rb")), "image/jpeg")
        answer = service.http.post("/api/jobs", files=files, data=fields)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_queued_then_running_live_then_a_video_that_plays_and_seeks(start_service, browser, long_clip, photo):
    service = start_service(local_workers=0)  # nothing takes the jobs until a worker is started
    first = submit(service, long_clip, photo, model="style-image")
    second = submit(service, long_clip, style="7")
    page = signed_in(browser, service)

    page.goto(f"{service.url}/jobs/{second['id']}")
    assert page.text_content("#state") == "queued"
    assert page.text_content("#queue") == "Waiting in the queue: about 1 job before it."
    assert page.is_hidden("#progress")  # no "0/0 frames" for a job that has not started
    assert page.text_content("#attempt") == "not started yet"
    assert page.get_attribute("#submitted", "datetime").endswith("Z")
    assert "ago" in page.text_content("#submitted") or "now" in page.text_content("#submitted")

    page.goto(f"{service.url}/jobs/{first['id']}")
    assert page.text_content("#queue") == "Next in the queue: a free worker takes it next."
    wait_until(page, "document.querySelector('#painting').naturalWidth > 0")  # the painting it was given
    with worker(service):
        # Live, without a reload: the state and its colour, the attempt, the start time, the frames.
        page.wait_for_selector("#state.running", timeout=120_000)
        assert page.is_hidden("#queue") and page.is_visible("#progress")
        wait_until(page, "document.querySelector('#attempt').textContent === 'attempt 1 of 3'")
        wait_until(page, "document.querySelector('#started').getAttribute('datetime') !== null")
        wait_until(page, "document.querySelector('#duration').textContent.endsWith('so far')")
        seen = page.text_content("#frames")
        frames_moved = (
            "(seen) => document.querySelector('#frames').textContent !== seen || "
            "document.querySelector('#state').textContent !== 'running'"
        )
        wait_until(page, frames_moved, 60, arg=seen)
        assert '"event": "claimed"' in page.text_content("#log")  # the log tail, live
        page.wait_for_selector("#state.succeeded", timeout=180_000)  # the page reloads itself when the job ends
    assert page.text_content("#attempt") == "attempt 1 of 3"
    assert page.text_content("#frames").startswith("192/192 frames")
    assert page.get_attribute("#finished", "datetime").endswith("Z")
    assert " s" in page.text_content("#duration") and "so far" not in page.text_content("#duration")

    # The player: the output plays in the page, and seeking works (the server answers ranges).
    wait_until(page, "document.querySelector('#player').readyState >= 1", 30)
    duration = page.evaluate("document.querySelector('#player').duration")
    assert duration == pytest.approx(8.0, abs=0.2)
    page.evaluate(
        "() => new Promise((done) => { const v = document.querySelector('#player');"
        " v.addEventListener('seeked', done, {once: true}); v.currentTime = 5.5; })"
    )
    assert page.evaluate("document.querySelector('#player').currentTime") == pytest.approx(5.5, abs=0.1)
    page.evaluate("document.querySelector('#player').muted = true")
    page.evaluate("document.querySelector('#player').play()")
    wait_until(page, "document.querySelector('#player').currentTime > 5.6", 20)
    # The still strip: five pairs along the video, every picture loaded.
    wait_until(page, "[...document.querySelectorAll('#strip img')].every((i) => i.complete && i.naturalWidth > 0)")
    assert page.locator("#strip img").count() == 10
    assert page.locator("#download").is_visible()  # the download stays

    page.goto(service.url + "/")
    row = page.locator(f"tr[data-id='{first['id']}']")
    assert row.locator("time.submitted").get_attribute("datetime").endswith("Z")
    assert row.locator(".duration").text_content().endswith(" s")


def test_failed_and_cancelled_pages(start_service, browser, tmp_path, clips):
    service = start_service(local_workers=0)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video at all" * 100)
    failing = submit(service, bad, style="7")
    cancelled = submit(service, clips["silent"], style="3:0.5,12:0.5")
    assert service.http.post(f"/api/jobs/{cancelled['id']}/cancel").status_code == 200
    page = signed_in(browser, service)
    page.goto(f"{service.url}/jobs/{cancelled['id']}")
    assert page.text_content("#state") == "cancelled" and "cancelled" in page.get_attribute("#state", "class")
    assert page.is_hidden("#queue") and page.locator("#player").count() == 0
    assert page.locator("img.style-thumb").count() == 2  # the blend's two styles
    with worker(service):
        page.goto(f"{service.url}/jobs/{failing['id']}")
        page.wait_for_selector("#state.failed", timeout=120_000)
    assert page.is_visible("#reason") and page.text_content("#reason").strip()
    assert page.locator("#player").count() == 0 and page.locator("#download").count() == 0
    assert page.get_attribute("#finished", "datetime").endswith("Z")
