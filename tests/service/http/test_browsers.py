"""Issue 26, findings 6 and 8: sessions, cross-site forms, security headers, and what the service lets out.

The cookie was the bearer token itself, without Secure, still good after sign-out (a GET); another
site could sign a visitor in as its own tenant (login CSRF); no page had CSP, X-Frame-Options,
nosniff, Referrer-Policy or HSTS; /metrics was open by default; a store failure's 503 named the
service's folders; ?error= text on /login and / was shown as given.
"""

import re
import shutil

import pytest
from fastapi.testclient import TestClient

from restyle.config import Settings
from restyle.errors import StoreError
from restyle.service.http.app import create_app
from tests.service.test_api import ALICE, BOB, ROOT, auth

CAROL = "carol-token-0123456789ab"  # the attacker's own tenant


@pytest.fixture()
def site(tmp_path):
    settings = Settings(home=tmp_path, tokens=f"alice:submitter:{ALICE},bob:submitter:{BOB},root:admin:{ROOT}")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.settings = settings
        yield client


def sign_in(client, token):
    answer = client.post("/login", data={"token": token}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    return answer


def test_the_cookie_is_a_random_session_not_the_token_and_signing_out_revokes_it(site):
    answer = sign_in(site, ALICE)
    cookie = answer.headers["set-cookie"]
    assert ALICE not in cookie
    assert re.search(r"(?i)httponly", cookie) and re.search(r"(?i)samesite=lax", cookie)
    session = site.cookies.get("restyle_session")
    assert session and session != ALICE and len(session) >= 40
    assert site.get("/", follow_redirects=False).status_code == 200  # signed in by the session

    assert site.get("/logout", follow_redirects=False).status_code == 405  # sign-out is a POST
    assert site.post("/logout", follow_redirects=False).status_code == 303
    site.cookies.clear()
    site.cookies.set("restyle_session", session)  # a copy of the old cookie opens nothing now
    assert site.get("/", follow_redirects=False).headers["location"] == "/login"
    assert site.get("/api/jobs").status_code == 401
    site.cookies.set("restyle_token", ALICE)  # and the token as a cookie never did anything more
    assert site.get("/api/jobs").status_code == 401


def test_over_https_the_cookie_is_secure_with_the_host_prefix_and_hsts_is_sent(tmp_path):
    settings = Settings(home=tmp_path, tokens=f"alice:submitter:{ALICE}", public_url="https://restyle.example")
    with TestClient(create_app(settings), base_url="https://restyle.example") as client:
        answer = sign_in(client, ALICE)
        assert re.search(r"(?i)^__Host-restyle_session=[^;]+;.*secure", answer.headers["set-cookie"])
        assert "max-age=" in answer.headers["strict-transport-security"]
        assert client.get("/", follow_redirects=False).status_code == 200
    with TestClient(create_app(settings.model_copy(update={"public_url": ""}))) as plain:
        assert "strict-transport-security" not in plain.get("/login").headers


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://attacker.example"},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://evil.testserver"},
        {"Origin": "https://attacker.example"},  # an older browser: no fetch metadata
        {"Origin": "null"},  # a sandboxed frame or a data: page
    ],
)
def test_a_form_from_another_site_is_refused_sign_in_included(site, headers):
    answer = site.post("/login", data={"token": BOB}, headers=headers, follow_redirects=False)
    assert answer.status_code == 403 and "another site" in answer.text  # on the dashboard's page (a form's answer)
    assert answer.headers["content-type"].startswith("text/html")
    assert "set-cookie" not in answer.headers
    sign_in(site, ALICE)
    for path, data in (("/batches", {"prefix": "x"}), ("/logout", {})):
        assert site.post(path, data=data, headers=headers, follow_redirects=False).status_code == 403
    assert site.get("/", follow_redirects=False).status_code == 200  # the cross-site sign-out did not happen


def test_the_service_own_pages_and_bearer_clients_pass_the_cross_site_check(site):
    own = {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}
    assert site.post("/login", data={"token": ALICE}, headers=own, follow_redirects=False).status_code == 303
    assert site.post("/login", data={"token": ALICE}, headers={"Origin": "http://testserver"}).status_code == 200
    # a script elsewhere that holds a token may call the API: a browser never sends one on its own
    foreign = {"Sec-Fetch-Site": "cross-site", "Origin": "https://elsewhere.example", **auth(ROOT)}
    assert site.post("/api/events", json={"Records": []}, headers=foreign).status_code == 200


def test_every_page_has_the_security_headers_and_no_inline_script_without_the_nonce(site):
    sign_in(site, ALICE)
    for path in ("/login", "/", "/batches", "/api/jobs", "/healthz", "/no-such-page"):
        answer = site.get(path, follow_redirects=False)
        headers = answer.headers
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, path
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "no-referrer", path
        if answer.headers["content-type"].startswith("text/html"):
            nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
            tags = re.findall(r"<(script|style)([^>]*)>", answer.text)
            assert tags and all(f'nonce="{nonce}"' in attrs for _, attrs in tags), (path, tags)
            assert not re.search(r"\son[a-z]+=", answer.text), path  # no inline event handlers
    assert "/logout" in site.get("/").text and 'method="post" action="/logout"' in site.get("/").text


def test_metrics_are_closed_by_default(site, tmp_path):
    """Finding 8: every worker's host and pid and every tenant's activity, to anyone."""
    assert site.get("/metrics").status_code == 401
    assert site.get("/metrics", headers=auth(ALICE)).status_code == 401
    assert site.get("/metrics", headers=auth(ROOT)).status_code == 200
    settings = site.settings.model_copy(update={"metrics_public": True, "home": tmp_path / "open"})
    with TestClient(create_app(settings)) as open_to_all:
        assert open_to_all.get("/metrics").status_code == 200


def test_a_store_failure_answers_a_fixed_503(site, monkeypatch):
    """Finding 8: the store's own message named the service's folders."""
    data = site.app.state.context.data

    def broken(*_args, **_kwargs):
        raise StoreError(f"cannot list {site.settings.home}/data/inbox: Permission denied")

    monkeypatch.setattr(data, "list", broken)
    monkeypatch.setattr(type(data), "list", broken, raising=False)
    monkeypatch.setattr(data, "put_file", broken)
    with open(__file__, "rb") as video:
        answer = site.post("/api/jobs", files={"file": ("a.mp4", video)}, data={"style": "7"}, headers=auth(ALICE))
    assert answer.status_code == 503, answer.text
    assert answer.json()["detail"] == "service unavailable: a store is unreachable; try again"
    assert str(site.settings.home) not in answer.text


def test_error_text_in_the_url_is_never_shown_only_codes_with_fixed_messages(site):
    """Finding 8: /login?error=... and /?error=... showed any text a link carried."""
    planted = "Your+session+expired.+Call+support+at+555-0100"
    assert "555-0100" not in site.get(f"/login?error={planted}").text
    assert "That token is not known." in site.post("/login", data={"token": "wrong-token"}).text
    sign_in(site, ALICE)
    assert "555-0100" not in site.get(f"/?error={planted}").text
    assert "555-0100" not in site.get(f"/batches?error={planted}").text
    # a refusal's own reason comes back through the session, once; the URL holds only its code
    with open(__file__, "rb") as video:
        answer = site.post("/submit", files={"file": ("a.mp4", video)}, data={"style": "99"}, follow_redirects=False)
    assert answer.headers["location"] == "/?error=refused"
    page = site.get("/?error=refused").text
    assert "style 99 is out of range" in page
    assert "style 99" not in site.get("/?error=refused").text  # shown once
    answer = site.post("/batches", data={"prefix": "../up"}, follow_redirects=False)
    assert answer.headers["location"] == "/batches?error=refused"
    assert "must be a plain path" in site.get("/batches?error=refused").text


# -- in a real browser: another site's page signs the visitor in as its own tenant ------------------------------


@pytest.mark.slow
def test_login_csrf_is_refused_in_chromium(start_service):
    """Finding 6, as shown in the review: a page on another site posts the attacker's token to /login; the
    visitor's later upload would be the attacker's. Here the post is refused and the visitor stays signed out."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    tokens = {"RESTYLE_TOKENS": f"carol:submitter:{CAROL},root:admin:{ROOT}", "TEST_ADMIN_TOKEN": ROOT}
    service = start_service(tokens, local_workers=0)
    attack = f"""<!doctype html><form id="f" method="post" action="{service.url}/login">
        <input name="token" value="{CAROL}"></form><script>document.getElementById("f").submit()</script>"""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.route("http://attacker.example/**", lambda route: route.fulfill(content_type="text/html", body=attack))
            with page.expect_response(f"{service.url}/login") as posted:
                page.goto("http://attacker.example/")
            assert posted.value.status == 403
            page.goto(service.url + "/")
            assert page.url.endswith("/login")  # not signed in as carol
            assert not [c for c in page.context.cookies() if c["name"].endswith("restyle_session")]
            # the service's own form still signs in, in the same browser
            page.fill("input[name=token]", CAROL)
            page.click("button[type=submit]")
            page.wait_for_selector("form.submit")
            assert "carol" in page.text_content("header .who")
            page.click("form.signout button")
            page.wait_for_url("**/login")
            page.goto(service.url + "/")
            assert page.url.endswith("/login")
        finally:
            browser.close()


def test_a_dashboard_form_over_a_limit_gets_a_page_and_the_api_keeps_json(site):
    """Issue 26: the door's refusal of a form's upload (before its body is read) was raw JSON on the page."""
    sign_in(site, ALICE)
    over = str(10**12)  # over every form limit
    headers = {"content-type": "multipart/form-data; boundary=x", "content-length": over, "origin": str(site.base_url)}
    page = site.post("/submit", content=b"--x--\r\n", headers=headers, follow_redirects=False)
    assert page.status_code == 413 and page.headers["content-type"].startswith("text/html"), page.text
    assert "<h1>Too big</h1>" in page.text and "RESTYLE_MAX_UPLOAD_BYTES" in page.text
    assert page.headers["connection"] == "close" and "content-security-policy" in page.headers
    api = site.post("/api/jobs", content=b"--x--\r\n", headers={**headers, **auth(ALICE)})
    assert api.status_code == 413 and "over the limit" in api.json()["detail"]
