"""The dashboard's batch pages in a real headless Chromium, at a phone's width (390 px) and a desktop's (1280 px),
for a batch in every state a batch ends in and one running, and the batches list: nothing wider than the window.

The batches are real: files in the admin's space, submitted through the API of a real ``restyle serve``, scored by
a real worker. The screenshots are this test's artifact: docs/screens/batches/<page>-<width>.png.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from PIL import Image

from restyle.media.sample import packaged_photo
from tests.service.test_dashboard import browser  # noqa: F401 - the Chromium fixture

pytestmark = pytest.mark.slow

SCREENS = Path(__file__).resolve().parents[2] / "docs" / "screens" / "batches"
WIDTHS = (390, 1280)
FINAL = ("succeeded", "partial", "failed", "stopped", "cancelled")
# A camera's name: long and without a space to break it at, the hardest for a phone's width.
LONG_NAME = "IMG_20240817_183412_HDR_PORTRAIT_BOKEH_edited_final_version_2_for_the_catalogue.jpg"


def picture(path: Path, size: tuple[int, int] = (64, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(packaged_photo()).convert("RGB").resize(size).save(path)


def hostile(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a-text-named-as-a-picture.jpg").write_text("not a picture\n" * 50)
    (folder / "b-random-bytes.mp4").write_bytes(os.urandom(3000))
    (folder / "c-empty.png").write_bytes(b"")


def submit(service, prefix: str, **body) -> str:
    answer = service.http.post("/api/batches", json={"prefix": prefix, "spec": {"style": "7"}, **body})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def wait(service, batch_id: str, states=FINAL, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = service.http.get(f"/api/batches/{batch_id}").json()
        if batch["state"] in states:
            return batch
        time.sleep(0.3)
    log = service.log.read_text()[-3000:]
    raise AssertionError(f"batch {batch_id} still {batch['state']} after {timeout} s: {log}")


def make_batches(service) -> dict[str, str]:
    """A batch in each state, by its name: cancelled while queued, four scored by a worker, one left running."""
    space = service.home / "data" / "datasets" / "admin"
    for name in ("one.jpg", LONG_NAME, "sub/übersicht-straße.png"):
        picture(space / "photos" / name)
    picture(space / "mixed" / "good.jpg")
    picture(space / "mixed" / "sub" / LONG_NAME, (40, 30))
    hostile(space / "mixed")
    hostile(space / "bad")
    hostile(space / "stops")  # its three bad items come first: the allowance of 1 stops it after them
    for n in range(4):
        picture(space / "stops" / f"z-good-{n}.jpg")
    for n in range(6):
        picture(space / "cancel" / f"{n}.jpg")

    ids = {"cancelled": submit(service, "cancel")}
    assert service.http.post(f"/api/batches/{ids['cancelled']}/cancel").status_code == 200  # no worker runs yet
    ids |= {
        "succeeded": submit(service, "photos"),
        "partial": submit(service, "mixed"),
        "failed": submit(service, "bad"),
        "stopped": submit(service, "stops", max_failures=1),
    }
    worker = service.worker()
    try:
        ended = {state: wait(service, batch_id)["state"] for state, batch_id in ids.items()}
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert ended == {state: state for state in ids}, ended
    for n in range(3):  # the same prefix again with more in it: the three scored are reused, the new wait
        picture(space / "photos" / "more" / f"new-{n}.jpg")
    ids["running"] = submit(service, "photos")
    running = wait(service, ids["running"], states=("running",))
    assert running["progress"]["reused"] == 3 and running["progress"]["left"] == 3, running
    return ids


def test_the_batch_pages_fit_a_phone_and_a_desktop_in_every_state(start_service, browser):  # noqa: F811
    service = start_service(local_workers=0, env={"RESTYLE_BATCH_IMAGES_PER_JOB": "2"})
    ids = make_batches(service)
    pages = {"list": "/batches"} | {state: f"/batches/{batch_id}" for state, batch_id in ids.items()}
    pages["partial-failed"] = f"/batches/{ids['partial']}?state=failed"  # the reasons, filtered
    SCREENS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page()
    page.goto(service.url + "/login")
    page.fill("input[name=token]", service.token)
    page.click("button[type=submit]")
    page.wait_for_selector("form.submit")
    overflowing = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 844 if width < 1000 else 900})
        for name, path in pages.items():
            page.goto(service.url + path)
            if name in ids:
                assert page.text_content("#state") == ("running" if name == "running" else name)
            else:
                assert page.locator("#batches tbody tr, #items tbody tr").count() >= 1
            widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            if widths[0] > widths[1]:
                overflowing.append(f"{name} at {width} px: {widths[0]} px wide")
            page.screenshot(path=str(SCREENS / f"{name}-{width}.png"), full_page=True)
    assert not overflowing, overflowing
    reasons = page.locator("#items td.reason").all_text_contents()  # the last page: the failed items, filtered
    assert len(reasons) == 3 and all("neither a picture" in r or "is empty" in r for r in reasons), reasons
