"""Issue 21, attack 3: every parameter of every door keeps the same rules (the JobSpec's validators).

Empty, blank, out of range, not finite, too long: the API answers 422 with the reason and makes no
job; the CLI exits 2 with one line; the dashboard's form shows the reason; an inbox sidecar's job
fails with it. (``style=""`` used to make a job with style 0 at the API, and at the CLI.)
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from restyle.cli import main
from restyle.config import Settings
from restyle.service.http.app import create_app
from restyle.service.worker import Worker
from tests.service.test_api import sign_in
from tests.service.test_catalogue import ALICE, BOB, ROOT, auth
from tests.service.test_doors_api import drop, inbox_jobs

# (field, the value as JSON text, what the reason must name): every JobSpec field and the upload's file name.
BAD_JSON = [
    ("filename", '""', "filename"),
    ("filename", '"   "', "filename"),
    ("filename", json.dumps("a" * 301), "filename"),
    ("filename", '"a\\u0000.mp4"', "filename"),
    ("model", '""', "model"),
    ("model", '" "', "model"),
    ("model", json.dumps("m" * 65), "model"),
    ("model", '"sty les"', "model"),
    ("style", '""', "style"),
    ("style", '"  "', "style"),
    ("style", '"\\t"', "style"),
    ("style", '"26"', "style"),
    ("style", '"-1"', "style"),
    ("style", '"3:nan"', "style"),
    ("style", '"3:1e400"', "style"),
    ("style", '"3:0,4:0"', "style"),
    ("style", '"3:"', "style"),
    ("style", json.dumps("1," * 201), "style"),
    ("style", "7", "style"),
    ("style_image", '""', "style_image"),
    ("style_image", '" \\t "', "style_image"),
    ("style_image", json.dumps("p" * 1001), "style_image"),
    ("strength", '""', "strength"),
    ("strength", '" "', "strength"),
    ("strength", "-0.1", "strength"),
    ("strength", "1.5", "strength"),
    ("strength", "1e400", "strength"),
    ("strength", '"NaN"', "strength"),
    ("strength", "NaN", "strength"),
    ("deflicker", '""', "deflicker"),
    ("deflicker", "-1", "deflicker"),
    ("deflicker", "2", "deflicker"),
    ("deflicker", "-Infinity", "deflicker"),
    ("deflicker", '"inf"', "deflicker"),
    ("params", '{"": 1}', "params"),
    ("params", '{"x": ""}', "params"),
    ("params", '{"x": "  "}', "params"),
    ("params", '{"x": 1e400}', "params"),
    ("params", '{"x": [1, NaN]}', "params"),
    ("params", '{"x": null}', "params"),
    ("params", json.dumps({"x": "a" * 1001}), "params"),
    ("params", json.dumps({f"k{i}": 1 for i in range(33)}), "params"),
    ("params", '{"x": [[[[[[1]]]]]]}', "params"),
    ("params", '"confidence=0.5"', "params"),
    ("output", '{"container": ""}', "output"),
    ("output", '{"container": "avi"}', "output"),
    ("output", '{"codec": ""}', "output"),
    ("output", '{"codec": " "}', "output"),
    ("output", json.dumps({"codec": "c" * 65}), "output"),
    ("output", '{"crf": 52}', "output"),
    ("output", '{"crf": -1}', "output"),
    ("output", '{"crf": NaN}', "output"),
    ("output", '{"preset": ""}', "output"),
]


@pytest.fixture()
def client(tmp_path):
    settings = Settings(
        home=tmp_path / "home",
        tokens=f"alice:submitter:{ALICE},bob:submitter:{BOB},root:admin:{ROOT}",
        max_upload_bytes=2_000_000,
        sidecar_wait_seconds=0,
        submit_rate_per_minute=0,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def no_jobs(client) -> bool:
    return client.get("/api/jobs", headers=auth(ROOT)).json() == []


def reason(response) -> str:
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else json.dumps(detail)


@pytest.mark.parametrize(("field", "value", "named"), BAD_JSON)
def test_the_api_json_door_refuses_every_bad_value_with_its_reason(client, field, value, named):
    fields = {"filename": '"a.mp4"', "style": '"7"'} if field not in ("style_image",) else {"filename": '"a.mp4"'}
    fields[field] = value
    body = "{" + ", ".join(f'"{name}": {text}' for name, text in fields.items()) + "}"
    response = client.post("/api/uploads", content=body, headers=auth(ALICE) | {"Content-Type": "application/json"})
    assert response.status_code == 422, (body[:200], response.status_code, response.text[:300])
    assert named in reason(response), response.text[:300]
    assert no_jobs(client)


# The same rules in a multipart form: every value is text there, and an empty field is a value, not an absence.
BAD_FORM = [
    (field, json.loads(value) if value.startswith('"') else value, named)
    for field, value, named in BAD_JSON
    if field != "filename" and value not in ("NaN", "-Infinity", "7")
] + [  # 7: a number in JSON, text in a form
    ("strength", "nan", "strength"),
    ("strength", "Infinity", "strength"),
    ("deflicker", "-inf", "deflicker"),
    ("params", "", "params"),
    ("output", "", "output"),
    ("params", "{not json", "params"),
    ("output", "[]", "output"),
]


@pytest.mark.parametrize(("field", "value", "named"), BAD_FORM)
def test_the_api_multipart_door_refuses_every_bad_value_with_its_reason(client, clips, field, value, named):
    form = {"style": "7", field: value} if field != "style_image" else {field: value}
    with open(clips["silent"], "rb") as video:
        response = client.post(
            "/api/jobs", files={"file": ("clip.mp4", video, "video/mp4")}, data=form, headers=auth(ALICE)
        )
    assert response.status_code == 422, (form, response.status_code, response.text[:300])
    assert named in reason(response), response.text[:300]
    assert no_jobs(client)
    assert not list(client.app.state.context.data.list("inbox/"))  # nothing stored for a refused job


def test_an_empty_style_is_refused_where_it_used_to_make_a_job(client, clips):
    """The attack as reported: style="" answered 201 and made a job."""
    response = client.post("/api/uploads", json={"filename": "a.mp4", "style": ""}, headers=auth(ALICE))
    assert response.status_code == 422 and reason(response) == "style: style must not be empty or blank", response.text
    with open(clips["silent"], "rb") as video:
        response = client.post(
            "/api/jobs", files={"file": ("clip.mp4", video)}, data={"style": ""}, headers=auth(ALICE)
        )
    assert response.status_code == 422 and "style must not be empty" in reason(response), response.text
    assert no_jobs(client)


@pytest.mark.parametrize("query", ["state=", "state=%20", "state=nope", "limit=0", "limit=1001", "limit=", "limit=nan"])
def test_the_job_listing_refuses_bad_filters(client, query):
    response = client.get(f"/api/jobs?{query}", headers=auth(ALICE))
    assert response.status_code == 422 and reason(response), response.text


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--style", ""], "style must not be empty or blank"),
        (["--style", " "], "style must not be empty or blank"),
        (["--style", "26"], "style 26 is out of range"),
        (["--style", "3:inf"], "style weight 'inf'"),
        (["--strength", "nan"], "strength: Input should be a finite number"),
        (["--strength", "2"], "strength"),
        (["--deflicker", "inf"], "deflicker"),
        (["--param", "confidence="], "parameter confidence must not be empty"),
        (["--style-image", ""], "style_image must not be empty"),
        (["--model", ""], "model"),
        (["--model", "onnx:"], "model_file must not be empty"),
    ],
)
def test_the_cli_door_exits_2_with_one_line(clips, tmp_path, capsys, args, named):
    output = tmp_path / "out.mp4"
    assert main(["run", str(clips["silent"]), "-o", str(output), "-q", *args]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("restyle: error:") and "\n" not in error and named in error, error
    assert not output.exists()


@pytest.mark.parametrize(
    ("sidecar", "named"),
    [
        ('{"style": ""}', "style must not be empty"),
        ('{"strength": 1e400}', "strength"),
        ('{"params": {"confidence": " "}}', "parameter confidence must not be empty"),
        ('{"output": {"codec": ""}}', "output.codec"),
    ],
)
def test_the_inbox_door_fails_the_job_with_the_reason(client, clips, sidecar, named):
    context = client.app.state.context
    drop(context, "bad.mp4", clips["silent"], sidecar)
    (job,) = inbox_jobs(client).values()
    assert job["model"] == "refused"
    claimed = context.jobs.claim("test-worker", 30)
    assert Worker(context, "test-worker").process(claimed) == "failed"
    failed = client.get(f"/api/jobs/{job['id']}", headers=auth(ROOT)).json()
    assert failed["state"] == "failed" and named in failed["reason"] and "bad.mp4.json" in failed["reason"], failed[
        "reason"
    ]


@pytest.mark.parametrize(
    ("form", "named"),
    [
        ({"model": "styles", "style": "7", "blend": " "}, "style must not be empty"),
        ({"model": "styles", "style": "7", "strength": " "}, "strength"),
        ({"model": "styles", "style": "7", "deflicker": "nan"}, "deflicker"),
        ({"model": "styles", "style": "7", "blend": "3:0.5,40:0.5"}, "style 40 is out of range"),
    ],
)
def test_the_dashboard_door_shows_the_reason(client, clips, form, named):
    sign_in(client, ALICE)
    with open(clips["silent"], "rb") as video:
        response = client.post("/submit", files={"file": ("clip.mp4", video)}, data=form, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/?error="), response.headers
    page = client.get(response.headers["location"]).text
    assert named in page.replace("&#39;", "'"), page[:2000]
    assert no_jobs(client)


def test_the_dashboard_form_still_takes_its_unfilled_inputs_as_absent(client, clips):
    """A browser sends every input of the form; the ones left empty mean 'the default', not 'empty'."""
    sign_in(client, ALICE)
    with open(clips["silent"], "rb") as video:
        response = client.post(
            "/submit",
            files={"file": ("clip.mp4", video)},
            follow_redirects=False,
            data={"model": "styles", "style": "7", "blend": "", "saved_picture": "", "strength": "", "deflicker": ""},
        )
    assert response.status_code == 303 and response.headers["location"].startswith("/jobs/"), response.headers
