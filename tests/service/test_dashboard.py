"""The dashboard in a real headless Chromium: sign in, submit through the page, watch it finish, see the still."""

import shutil

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
    page.wait_for_function("() => document.querySelector('img#after').naturalWidth > 0")
    assert after.evaluate("img => img.naturalWidth") == 320
    assert '"event": "succeeded"' in page.text_content("#log")
    page.screenshot(path=str(tmp_path / "job.png"), full_page=True)

    page.goto(service.url + "/")
    assert page.text_content("#jobs tbody tr .state") == "succeeded"
    page.goto(service.url + "/workers")
    assert page.locator("#workers tbody tr").count() >= 1
