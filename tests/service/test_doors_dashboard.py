"""The dashboard's form in a real headless Chromium: pick a built-in style from the gallery; upload a painting."""

from __future__ import annotations

import pytest

from tests.service.test_catalogue import ALICE, BOB, painting
from tests.service.test_dashboard import browser  # noqa: F401 - the Chromium fixture
from tests.service.test_doors_e2e import TOKENS, clip  # noqa: F401 - the short clip with sound

pytestmark = pytest.mark.slow


def sign_in(page, service, token):
    page.goto(service.url + "/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_selector("form.submit")


def test_pick_a_style_from_the_gallery_then_upload_a_painting(start_service, browser, clip, tmp_path):  # noqa: F811 - browser and clip are the imported fixtures
    service = start_service(TOKENS)
    page = browser.new_page()
    page.set_default_timeout(90_000)  # the machine may be busy: steps wait longer than Playwright's 30 s
    sign_in(page, service, ALICE)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#gallery img')].every(img => img.complete && img.naturalWidth === 128)",
        timeout=120_000,
    )
    assert page.locator("#gallery label.style").count() == 26

    page.set_input_files("input[name=file]", str(clip))
    page.click("#gallery label.style:has(input[value='12'])")
    assert page.is_checked("input[name=model][value=styles]")
    page.click("form.submit button[type=submit]")
    page.wait_for_url("**/jobs/*")
    assert page.text_content("#model") == "styles:12"
    page.wait_for_selector("#state.succeeded", timeout=180_000)

    page.goto(service.url + "/")
    page.set_input_files("input[name=file]", str(clip))
    page.set_input_files("input[name=style_image]", str(painting(tmp_path / "painting.png", size=(200, 150))))
    assert page.is_checked("input[name=model][value=style-image]")  # choosing a picture chose its model
    page.click("form.submit button[type=submit]")
    page.wait_for_url("**/jobs/*")
    assert page.text_content("#model") == "style-image:painting.png"
    page.wait_for_selector("#state.succeeded", timeout=180_000)
    page.wait_for_function("() => document.querySelector('img#after').naturalWidth > 0")
    assert page.locator("img#after").evaluate("img => img.naturalWidth") == 320
    page.screenshot(path=str(tmp_path / "painting-job.png"), full_page=True)

    page.goto(service.url + "/")
    assert [page.text_content(f"#jobs tbody tr:nth-child({n}) .model") for n in (1, 2)] == [
        "style-image:painting.png",
        "styles:12",
    ]
    # Another tenant sees neither the jobs nor the picture; a picture that is no picture is refused with the reason.
    other = browser.new_page()
    other.set_default_timeout(90_000)
    sign_in(other, service, BOB)
    assert other.locator("#jobs tbody tr[data-id]").count() == 0
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a picture")
    other.set_input_files("input[name=file]", str(clip))
    other.set_input_files("input[name=style_image]", str(broken))
    other.click("form.submit button[type=submit]")
    other.wait_for_selector("#error")
    assert "cannot be read as an image" in other.text_content("#error")
