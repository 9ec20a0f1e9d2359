"""Issue 27, findings 6 and 7 and the must-shows: every page of the dashboard in a real headless Chromium, with jobs
in the states a person meets (queued, succeeded, failed, cancelled), a job's actions (Run again open), a refused form,
a batch, a missing page and the API's docs: nothing wider than the window from 360 px up (measured in the page), no
serious or critical accessibility violation (axe-core, through axe-playwright-python), and /docs and /redoc rendered
with every request to another host cut off.

The screenshots are this test's artifact: docs/screens/<page>-<width>.png, at a phone's width (390 px) and a desktop's
(1280 px).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.service.test_batch_screens import picture, submit, wait
from tests.service.test_dashboard import browser, wait_until  # noqa: F401 - the Chromium fixture

pytestmark = pytest.mark.slow

SCREENS = Path(__file__).resolve().parents[2] / "docs" / "screens"
SHOT_WIDTHS = (390, 1280)
NARROWEST = 360
SEVERE = ("serious", "critical")
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
LOCAL = ("http://127.0.0.1:", "http://localhost:", "data:", "blob:", "about:")


def cut_off(page) -> list[str]:
    """Every request to another host refused, as on a box with no way out; the refused ones, for the assertion."""
    refused: list[str] = []

    def route(route):
        if route.request.url.startswith(LOCAL):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    return refused


def sign_in(page, service) -> None:
    page.goto(service.url + "/login")
    page.fill("input[name=token]", service.token)
    page.click("button[type=submit]")
    page.wait_for_selector("form.submit")


def make_jobs(service, clips, tmp_path) -> dict[str, str]:
    """A job in each state a person meets on the list, by name; a batch scored. The worker is started only after."""
    bad = tmp_path / "holiday.mp4"
    bad.write_bytes(os.urandom(4000))
    space = service.home / "data" / "datasets" / "admin"
    for name in ("one.jpg", "two.jpg"):
        picture(space / "photos" / name)

    def upload(path: Path, **fields) -> str:
        with path.open("rb") as video:
            answer = service.http.post("/api/jobs", files={"file": (path.name, video)}, data={"style": "7", **fields})
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]

    ids = {"succeeded": upload(clips["silent"]), "failed": upload(bad), "cancelled": upload(clips["silent"])}
    assert service.http.post(f"/api/jobs/{ids['cancelled']}/cancel").status_code == 200
    batch = submit(service, "photos")
    worker = service.worker()
    try:
        for state in ("succeeded", "failed"):
            assert service.wait_for(ids[state], timeout=240)["state"] == state
        wait(service, batch)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    ids["queued"] = upload(clips["silent"], strength="0.6")  # no worker now: it waits
    return ids | {"batch": batch}


def settle(page) -> list[str]:
    """Every picture on the page loaded (the gallery's are lazy: scrolled into view first); the broken ones."""
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    wait_until(page, "[...document.images].every(i => i.complete)", 60)
    page.evaluate("window.scrollTo(0, 0)")
    return page.evaluate("[...document.images].filter(i => i.naturalWidth === 0).map(i => i.src)")


def measure(page, name: str, width: int, axe) -> tuple[list[str], list[str]]:
    """The page at ``width``: what overflows or is broken, and its serious or critical accessibility violations."""
    overflow, severe = [], []
    broken = settle(page)
    if broken:
        overflow.append(f"{name} at {width} px: broken pictures {broken}")
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if widths[0] > widths[1]:
        wide = page.evaluate(
            """() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right >
                 window.innerWidth + 1).slice(0, 3).map(e => e.tagName + '.' + e.className + '#' + e.id)"""
        )
        overflow.append(f"{name} at {width} px: {widths[0]} px wide ({', '.join(wide)})")
    if axe is not None:
        for violation in axe.run(page).response["violations"]:
            if violation["impact"] in SEVERE:
                nodes = [n["target"] for n in violation["nodes"][:3]]
                severe.append(f"{name} at {width} px: {violation['id']} ({violation['impact']}) on {nodes}")
    return overflow, severe


def test_every_page_fits_from_360_px_and_has_no_serious_accessibility_violation(
    start_service,
    browser,  # noqa: F811
    clips,
    tmp_path,
):
    from axe_playwright_python.sync_playwright import Axe

    service = start_service(local_workers=0)
    ids = make_jobs(service, clips, tmp_path)
    pages = {
        "jobs": "/",
        **{f"job-{state}": f"/jobs/{ids[state]}" for state in ("queued", "succeeded", "failed", "cancelled")},
        "workers": "/workers",
        "batches": "/batches",
        "batch": f"/batches/{ids['batch']}",
        "not-found": "/no/such/page",
    }
    SCREENS.mkdir(parents=True, exist_ok=True)
    axe, overflowing, violations = Axe(), [], []
    signed_out = browser.new_page()
    page = browser.new_page()
    refused = cut_off(page) + cut_off(signed_out)
    sign_in(page, service)
    for width in (NARROWEST, *SHOT_WIDTHS):
        shot = width in SHOT_WIDTHS
        for view in (page, signed_out):
            view.set_viewport_size({"width": width, "height": 844 if width < 1000 else 900})
        signed_out.goto(service.url + "/login")
        found = measure(signed_out, "login", width, axe if shot else None)
        if shot:
            signed_out.screenshot(path=str(SCREENS / f"login-{width}.png"), full_page=True)
        for name, path in pages.items():
            page.goto(service.url + path)
            page.wait_for_load_state("networkidle")
            more = measure(page, name, width, axe if shot else None)
            found = (found[0] + more[0], found[1] + more[1])
            if shot:
                page.screenshot(path=str(SCREENS / f"{name}-{width}.png"), full_page=True)
        # a failed job's actions with the Run again form open (restyle.service.actions, job_actions.html)
        page.goto(f"{service.url}/jobs/{ids['failed']}")
        shown = [page.is_visible(f"#{action}") for action in ("retry", "delete", "cancel")]
        assert shown == [True, True, False], page.content()[:6000]
        page.click("#rerun-box summary")
        assert page.is_visible("#rerun-submit")
        more = measure(page, "job-actions", width, axe if shot else None)
        found = (found[0] + more[0], found[1] + more[1])
        if shot:
            page.screenshot(path=str(SCREENS / f"job-actions-{width}.png"), full_page=True)
        # the job form refused: its choices kept, the reason in plain words
        page.goto(service.url + "/")
        page.set_input_files("input[name=file]", str(clips["silent"]))
        page.click("#gallery label.style:has(input[value='12'])")
        page.fill("input[name=strength]", "1.5")
        with page.expect_navigation():
            page.click("form.submit button")
        assert page.locator("#error").count() == 1, (page.url, page.content()[-1500:])
        assert page.text_content("#error") == "Strength must be at most 1."
        assert page.is_checked("#gallery input[value='12']") and page.input_value("input[name=strength]") == "1.5"
        more = measure(page, "submit-refused", width, axe if shot else None)
        found = (found[0] + more[0], found[1] + more[1])
        if shot:
            page.screenshot(path=str(SCREENS / f"submit-refused-{width}.png"), full_page=True)
        overflowing += found[0]
        violations += found[1]
    assert not overflowing, overflowing
    assert not violations, violations
    assert not refused, refused  # the pages asked nothing of another host


def test_the_api_docs_render_with_the_network_cut_off(start_service, browser):  # noqa: F811
    service = start_service(local_workers=0)
    page = browser.new_page()
    refused = cut_off(page)
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    SCREENS.mkdir(parents=True, exist_ok=True)
    for width in SHOT_WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(service.url + "/docs")
        page.wait_for_selector(".swagger-ui .information-container .title", timeout=20_000)
        assert "restyle" in page.text_content(".swagger-ui .information-container .title")
        assert page.locator(".swagger-ui .opblock").count() >= 10  # the operations, from /openapi.json
        page.screenshot(path=str(SCREENS / f"docs-{width}.png"))
        page.click("text=Back to the dashboard")
        page.wait_for_url(service.url + "/login")  # the way back (signed out here: the sign-in page)
        page.goto(service.url + "/redoc")
        page.wait_for_selector(".api-content h1", timeout=30_000)
        assert page.text_content(".api-content h1").startswith("restyle")
        assert page.locator(".api-content h2").count() >= 10  # the operations, from /openapi.json
        page.screenshot(path=str(SCREENS / f"redoc-{width}.png"))
    assert not refused, refused
    # ReDoc's bundle links its "powered by" logo from its CDN: the CSP blocks it, and nothing else is missed
    blocked = [p for p in problems if ("Content Security Policy" in p or "Refused" in p) and REDOC_LOGO not in p]
    assert not blocked, problems
