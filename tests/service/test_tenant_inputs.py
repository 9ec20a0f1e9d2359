"""Issue 26, findings 7, 9 and 10: what a tenant sends that got through.

7. JSON nested too deep in ``params``/``output`` (POST /api/jobs, /submit), in a JSON body and in
   /api/events was a 500 (RecursionError in the parser). 9. Any of FFmpeg's encoders, crf 0, preset
   placebo; ``output.container`` accepted and ignored. 10. Download links with the key unquoted (a
   '#' or '%' in a dropped file's name made a link that never works); control characters reached
   job labels through a style picture's file name.
"""

import json

import av
import httpx
import pytest
from fastapi.testclient import TestClient

from restyle.config import Settings
from restyle.service.http.app import create_app
from restyle.stores.objects import local_link
from tests.service.test_api import ALICE, ROOT, auth, sign_in
from tests.service.test_attacks import Live, settings_for
from tests.service.test_catalogue import painting

DEEP = "[" * 100_000 + "]" * 100_000  # the parser recurses once per level: RecursionError long before the end


@pytest.fixture()
def site(tmp_path):
    settings = Settings(
        home=tmp_path / "home",
        tokens=f"alice:submitter:{ALICE},root:admin:{ROOT}",
        submit_rate_per_minute=0,
        workers=1,
        chunk_seconds=1,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.settings, client.context = settings, client.app.state.context
        yield client


def send(client, clip, token=ALICE, files=(), **form):
    with open(clip, "rb") as video:
        return client.post(
            "/api/jobs", files={"file": ("clip.mp4", video), **dict(files)}, data=form, headers=auth(token)
        )


# -- 7: nesting refused before it is parsed, at every door ----------------------------------------------------------


def test_the_depth_scan_counts_brackets_outside_strings_only():
    from restyle.jobspec import MAX_JSON_DEPTH, json_depth, load_json  # here: main (4b5e38b) has none of them

    assert [json_depth(t) for t in ("1", "[]", '{"a": [1, {"b": 2}]}', '"[[[["', '{"a": "\\"[[["}')] == [0, 1, 3, 0, 1]
    assert json_depth(DEEP) == 100_000 and json_depth(DEEP.encode()) == 100_000
    assert load_json('{"a": [[1]]}') == {"a": [[1]]}
    with pytest.raises(Exception, match=f"deeper than {MAX_JSON_DEPTH} levels"):
        load_json(DEEP, "params")


@pytest.mark.parametrize("field", ["params", "output"])
def test_json_nested_too_deep_is_refused_at_every_door_never_500(site, clips, field):
    answer = send(site, clips["silent"], style="7", **{field: DEEP})
    assert answer.status_code == 422 and "deeper than" in answer.json()["detail"], answer.text[:300]
    sign_in(site, ALICE)
    with open(clips["silent"], "rb") as video:
        page = site.post("/submit", files={"file": ("clip.mp4", video)}, data={field: DEEP}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/?error=refused"
    assert "deeper than" in site.get("/?error=refused").text
    site.cookies.clear()
    upload = site.post("/api/uploads", content=f'{{"filename": "a.mp4", "{field}": {DEEP}}}', headers=auth(ALICE))
    assert upload.status_code == 422 and "deeper than" in str(upload.json()["detail"]), upload.text[:300]
    event = site.post("/api/events", content=f'{{"Records": {DEEP}}}', headers=auth(ROOT))
    assert event.status_code == 422 and "deeper than" in event.json()["detail"], event.text[:300]
    assert site.get("/api/jobs", headers=auth(ROOT)).json() == []


# -- 9: encoders, floors, containers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "named"),
    [
        ({"codec": "mpeg4"}, "codec"),
        ({"codec": "h264_nvenc"}, "codec"),
        ({"crf": 0}, "under this service's floor of 16"),
        ({"preset": "placebo"}, "slower than this service allows"),
        ({"preset": "veryslow"}, "slower than this service allows"),
        ({"container": "jsonl"}, "makes video"),
        ({"container": "ts", "codec": "libvpx-vp9"}, "ts container holds no VP9"),
    ],
)
def test_encoder_knobs_outside_the_allowlist_and_floors_are_refused(site, clips, output, named):
    answer = send(site, clips["silent"], style="7", output=json.dumps(output))
    assert answer.status_code == 422 and named in str(answer.json()["detail"]), answer.text[:300]


def test_an_admin_may_go_below_the_floors(site, clips):
    answer = send(site, clips["silent"], ROOT, style="7", output=json.dumps({"crf": 0, "preset": "placebo"}))
    assert answer.status_code == 201, answer.text


@pytest.mark.slow
def test_output_container_is_honoured(site, clips):
    from tests.service.test_security import run_next_job

    answer = send(site, clips["silent"], style="7", output=json.dumps({"container": "mkv"}))
    assert answer.status_code == 201, answer.text
    job = run_next_job(site)
    assert job["state"] == "succeeded", job
    key = site.context.jobs.get(job["id"]).output_key
    assert key.endswith("-restyled.mkv"), key
    with av.open(site.context.data.path(key)) as made:
        assert "matroska" in made.format.name and made.streams.video[0].frames in (0, 48)


# -- 10: links and labels ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["my#clip.mp4", "100%.mp4", "a%41b.mp4", "what?.mp4", "two words.mp4"])
def test_a_download_link_works_whatever_the_name_holds(tmp_path, name):
    """Followed as a browser would, against a real uvicorn (the test client decodes a path twice)."""
    live = Live(settings_for(tmp_path))
    try:
        context = live.app.state.context
        key = f"outbox/0123abcd/{name}"
        context.data.put_bytes(b"the output's bytes", key)
        link = local_link(live.url, context.link_secret, key, 60)
        answer = httpx.get(link)
        assert answer.status_code == 200 and answer.content == b"the output's bytes", (link, answer.text[:200])
    finally:
        live.stop()


@pytest.mark.parametrize("name", [b"a\x00b.png", b"tab\there.png", b"bell\x07.png"])
def test_control_characters_in_a_picture_name_never_reach_a_label(site, clips, tmp_path, name):
    """Sent as raw multipart: a client library would escape them, a hostile one does not."""
    boundary = b"restyle-test-boundary"

    def part(field: bytes, body: bytes, filename: bytes | None = None) -> bytes:
        named = b'; filename="' + filename + b'"' if filename is not None else b""
        return (
            b"--"
            + boundary
            + b'\r\nContent-Disposition: form-data; name="'
            + field
            + b'"'
            + named
            + b"\r\n\r\n"
            + body
            + b"\r\n"
        )

    body = (
        part(b"file", clips["silent"].read_bytes(), b"clip.mp4")
        + part(b"model", b"style-image")
        + part(b"style_image", painting(tmp_path / "p.png").read_bytes(), name)
        + b"--"
        + boundary
        + b"--\r\n"
    )
    kind = {"Content-Type": "multipart/form-data; boundary=" + boundary.decode()}
    answer = site.post("/api/jobs", content=body, headers=auth(ALICE) | kind)
    assert answer.status_code == 422 and "control characters" in answer.json()["detail"], answer.text[:300]
    assert site.get("/api/jobs", headers=auth(ROOT)).json() == []
