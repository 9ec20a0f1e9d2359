"""Issue 27, findings 5, 6 and the smaller ones, without a browser: the docs from installed assets under a CSP of
'self', the dashboard's own 404/405 pages (the API's stay JSON), the favicon, the sign-in page's real token path,
names without the upload prefix, and a refused form that keeps what was entered and says what to do in plain words.
"""

import re

import pytest
from fastapi.testclient import TestClient

from restyle.config import Settings
from restyle.service.http.app import create_app
from tests.service.http.test_browsers import sign_in
from tests.service.test_api import ALICE, ROOT

VIDEO = ("clip.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "video/mp4")


@pytest.fixture()
def site(tmp_path):
    settings = Settings(home=tmp_path, tokens=f"alice:submitter:{ALICE},root:admin:{ROOT}")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def test_docs_and_redoc_load_only_this_services_files_under_a_self_csp(site):
    for path, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        page = site.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "http" not in csp and "cdn" not in page.text and "googleapis" not in page.text, csp
        assert re.search(r"script-src 'self' 'nonce-[\w-]+';", csp), csp
        nonce = re.search(r"'nonce-([\w-]+)'", csp).group(1)
        assert all(
            f'nonce="{nonce}"' in tag for tag in re.findall(r"<script>|<script [^>]*>", page.text) if "src" not in tag
        )
        srcs = re.findall(r'(?:src|href)="(/[^"]+)"', page.text)
        assert any(asset in s for s in srcs) and '<a href="/">' in page.text  # the way back to the dashboard
        for src in srcs:
            if src.startswith("/docs-assets/"):
                got = site.get(src)
                assert got.status_code == 200 and len(got.content) > 10_000, src


def test_unknown_pages_and_wrong_methods_answer_the_dashboards_page_and_the_api_keeps_json(site):
    sign_in(site, ALICE)
    missing = site.get("/no/such/page")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "Not found" in missing.text and 'href="/batches"' in missing.text  # in the frame, with the nav
    job = site.get("/jobs/0123abcd")
    assert job.status_code == 404 and "Back to your jobs" in job.text
    wrong = site.put("/workers")
    assert wrong.status_code == 405 and "Not here" in wrong.text and "GET" in wrong.headers["allow"]
    assert site.get("/workers").status_code == 403 and "Not allowed" in site.get("/workers").text
    api = site.get("/api/no-such")
    assert api.status_code == 404 and api.json()["detail"]
    assert site.get("/api/jobs/0123abcd").json() == {"detail": "no job 0123abcd"}


def test_favicon_and_the_sign_in_page_names_the_real_token_file(site, tmp_path):
    icon = site.get("/favicon.ico")
    assert (
        icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml") and b"<svg" in icon.content
    )
    assert 'rel="icon" href="/favicon.svg"' in site.get("/login").text
    assert "RESTYLE_TOKENS" in site.get("/login").text  # tokens are configured here: no admin.token file to name
    home = tmp_path / "elsewhere"
    with TestClient(create_app(Settings(home=home))) as embedded:
        assert f"{home / 'admin.token'}" in embedded.get("/login").text
        assert "~/.restyle" not in embedded.get("/login").text


def test_a_refused_form_keeps_its_fields_and_says_what_to_do_in_plain_words(site):
    sign_in(site, ALICE)
    fields = {"model": "styles", "style": "12", "strength": "1.5", "deflicker": "0.3", "blend": ""}
    answer = site.post("/submit", data=fields, files={"file": VIDEO}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/?error=refused"  # only a code in the URL
    page = site.get("/?error=refused").text
    assert 'id="error" role="alert">Strength must be at most 1.</p>' in page
    assert re.search(r'value="12" checked', page) and 'name="strength" value="1.5"' in page
    assert 'name="deflicker" value="0.3"' in page and "Pick the video again" in page
    assert "Input should be" not in page
    again = site.get("/?error=refused").text  # the notice is read once
    assert 'value="7" checked' in again and 'name="strength" value="1"' in again and "Pick the video" not in again

    picture = {"model": "style-image", "strength": "0.8"}
    site.post("/submit", data=picture, files={"file": VIDEO}, follow_redirects=False)
    page = site.get("/?error=refused").text
    assert "That model needs a painting: upload one under" in page and "POST /api" not in page
    assert "style_image" not in page.split('id="error"')[1].split("</p>")[0]
    assert re.search(r'value="style-image" checked', page) and "Pick the video and the painting again" in page


def test_an_uploads_name_is_shown_without_its_random_prefix(site):
    from restyle.service.keys import inbox, shown_name

    assert shown_name(inbox("alice", "my clip.mp4")).endswith("clip.mp4")
    assert "-" not in shown_name(inbox("alice", "clip.mp4"))
    assert shown_name("inbox/alice/deadbeef-clip.mp4") == "clip.mp4"
    assert shown_name("inbox/dropped/sub/deadbeef-clip.mp4") == "deadbeef-clip.mp4"  # a dropped file keeps its name
