"""The dashboard in a real headless Chromium: sign in, submit through the page, watch it finish, see the still."""

import shutil
import time

import pytest

from testing.servers import missing

pytestmark = pytest.mark.slow


@pytest.fixture()
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        missing("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


def wait_until(page, expression: str, timeout_s: float = 30.0, arg: object = None) -> None:
    """Poll ``expression`` (or a function of ``arg``) in the page until it is true; fail after ``timeout_s``.

    The one way these tests wait on the page. Not Playwright's wait_for_function: it builds its predicate with
    ``new Function``, which the dashboard's Content-Security-Policy (no 'unsafe-eval') refuses for a string
    expression. ``page.evaluate`` is not the page's own script, so the CSP does not apply; a page that reloads
    itself meanwhile (the job page when its job ends) is asked again once it has loaded."""
    from playwright.sync_api import Error

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if page.evaluate(expression, arg):
                return
        except Error as exc:  # only a navigation under way is waited out; any other error is the test's
            if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                raise
        assert time.monotonic() < deadline, f"not true after {timeout_s:.0f} s: {expression}"
        page.wait_for_timeout(200)


def test_submit_watch_and_see_the_output_still(start_service, browser, clips, tmp_path):
    service = start_service()
    page = browser.new_page()
    page.goto(service.url + "/")
    assert page.url.endswith("/login")
    page.fill("input[name=token]", "wrong")
    page.click("button[type=submit]")
    assert "not known" in page.text_content("p.error")
    page.fill("input[name=token]", service.token)
    page.click("button[type=submit]")
    page.wait_for_selector("form.submit")

    page.set_input_files("input[name=file]", str(clips["silent"]))
    page.click("#gallery label.style:has(input[value='12'])")  # a style from the gallery
    page.click("form.submit button")
    page.wait_for_url("**/jobs/*")
    page.wait_for_selector("#state.succeeded", timeout=180_000)  # the page reloads itself when the job ends
    assert page.text_content("#frames").startswith("48/48 frames")
    after = page.wait_for_selector("img#after")
    wait_until(page, "document.querySelector('img#after').naturalWidth > 0")
    assert after.evaluate("img => img.naturalWidth") == 320
    assert '"event": "succeeded"' in page.text_content("#log")
    page.screenshot(path=str(tmp_path / "job.png"), full_page=True)

    page.goto(service.url + "/")
    assert page.text_content("#jobs tbody tr .state") == "succeeded"
    page.goto(service.url + "/workers")
    assert page.locator("#workers tbody tr").count() >= 1
