"""The catalogue through the API, in-process: registered models (admins) and saved style pictures
(each tenant's own)."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from restyle.config import Settings
from restyle.service.http.app import create_app
from testing.models import negative_model

ALICE, BOB, ROOT = "alice-token-0123456789", "bob-token-0123456789ab", "root-token-0123456789ab"


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def painting(path, size=(96, 64), fmt="PNG"):
    """A bold, textured picture: diagonal stripes of two colours."""
    image = Image.new("RGB", size)
    image.putdata(
        [((230, 90, 20) if ((x + y) // 6) % 2 else (20, 40, 160)) for y in range(size[1]) for x in range(size[0])]
    )
    image.save(path, fmt)
    return path


@pytest.fixture()
def client(tmp_path):
    settings = Settings(
        home=tmp_path / "home",
        tokens=f"alice:submitter:{ALICE},bob:submitter:{BOB},root:admin:{ROOT}",
        max_upload_bytes=30_000_000,
        max_model_bytes=30_000_000,
        max_picture_bytes=100_000,
        max_picture_pixels=300 * 300,
        sidecar_wait_seconds=0,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def register(client, name, path, token=ROOT, kind=None):
    with open(path, "rb") as model:
        return client.post(
            "/api/models",
            files={"file": (path.name, model)},
            data={"name": name, **({"kind": kind} if kind else {})},
            headers=auth(token),
        )


def save(client, name, data: bytes, token=ALICE, filename="painting.png"):
    return client.post("/api/pictures", files={"file": (filename, data)}, data={"name": name}, headers=auth(token))


def test_an_admin_registers_a_model_and_everyone_lists_it(client, tmp_path):
    response = register(client, "negative", negative_model(tmp_path / "neg.onnx"))
    assert response.status_code == 201, response.text
    model = response.json()
    assert (model["name"], model["kind"], model["output"], model["added_by"]) == ("negative", "onnx", "frames", "root")
    stored = client.app.state.context.system.list("models/")
    assert [o.key for o in stored] == [f"models/{model['sha256']}.onnx"]
    assert [m["name"] for m in client.get("/api/models", headers=auth(BOB)).json()] == ["negative"]
    # The same file under a second name is stored once; removing one name keeps the file for the other.
    assert register(client, "negative2", tmp_path / "neg.onnx").status_code == 201
    assert len(client.app.state.context.system.list("models/")) == 1
    assert client.delete("/api/models/negative2", headers=auth(ROOT)).status_code == 200
    assert len(client.app.state.context.system.list("models/")) == 1
    assert client.delete("/api/models/negative", headers=auth(ROOT)).status_code == 200
    assert client.app.state.context.system.list("models/") == []
    assert client.delete("/api/models/negative", headers=auth(ROOT)).status_code == 404


def test_a_detector_registers_as_a_records_model(client, detector):
    model = register(client, "moderation", detector).json()
    assert (model["kind"], model["output"]) == ("yolo", "records")


def test_registration_refuses_with_reasons(client, tmp_path):
    good = negative_model(tmp_path / "neg.onnx")
    assert register(client, "negative", good, token=ALICE).status_code == 403
    assert "handler" in register(client, "styles", good).json()["detail"]
    assert register(client, "bad name!", good).status_code == 422
    assert register(client, "negative", good).status_code == 201
    assert register(client, "negative", good).status_code == 409

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a model at all" * 10)
    refused = register(client, "junk", junk)
    assert refused.status_code == 422 and "load" in refused.json()["detail"], refused.text

    unfit = negative_model(tmp_path / "flat.onnx", size=("N", 3))  # one input, but not a picture
    refused = register(client, "flat", unfit)
    assert refused.status_code == 422 and "NCHW" in refused.json()["detail"], refused.text
    refused = register(client, "negative-as-yolo", good, kind="yolo")
    assert refused.status_code == 422 and "yolo" in refused.json()["detail"], refused.text
    refused = register(client, "nokind", good, kind="no-such-handler")
    assert refused.status_code == 422 and "unknown model" in refused.json()["detail"], refused.text

    client.app.state.context.settings.max_model_bytes = 200_000
    big = tmp_path / "big.onnx"
    big.write_bytes(b"\0" * 300_000)
    refused = register(client, "big", big)
    assert refused.status_code == 413 and "RESTYLE_MAX_MODEL_BYTES" in refused.json()["detail"]
    assert [m["name"] for m in client.get("/api/models", headers=auth(ROOT)).json()] == ["negative"]


def test_a_saved_picture_is_its_owners_alone(client, tmp_path):
    data = painting(tmp_path / "painting.png").read_bytes()
    saved = save(client, "painting", data)
    assert saved.status_code == 201, saved.text
    assert (saved.json()["width"], saved.json()["height"]) == (96, 64)
    keys = [o.key for o in client.app.state.context.system.list("pictures/")]
    assert keys == [f"pictures/alice/{saved.json()['sha256']}"]
    assert [p["name"] for p in client.get("/api/pictures", headers=auth(ALICE)).json()] == ["painting"]
    assert client.get("/api/pictures", headers=auth(BOB)).json() == []
    assert client.delete("/api/pictures/painting", headers=auth(BOB)).status_code == 404
    assert save(client, "painting", data).status_code == 409
    assert save(client, "painting", data, token=BOB).status_code == 201  # bob's own, same name: no clash
    assert client.delete("/api/pictures/painting", headers=auth(ALICE)).status_code == 200
    assert [p["name"] for p in client.get("/api/pictures", headers=auth(BOB)).json()] == ["painting"]


def test_pictures_are_checked(client, tmp_path):
    refused = save(client, "text", b"just some text, not a picture")
    assert refused.status_code == 422 and "cannot be read as an image" in refused.json()["detail"]
    truncated = painting(tmp_path / "p.png").read_bytes()[:200]
    assert save(client, "truncated", truncated).status_code == 422
    huge = io.BytesIO()
    Image.new("RGB", (400, 400), "white").save(huge, "PNG")  # small file, too many pixels
    refused = save(client, "huge", huge.getvalue())
    assert refused.status_code == 422 and "RESTYLE_MAX_PICTURE_PIXELS" in refused.json()["detail"]
    refused = save(client, "heavy", b"\x89PNG" + b"\0" * 150_000)
    assert refused.status_code == 413 and "RESTYLE_MAX_PICTURE_BYTES" in refused.json()["detail"]
    # Content decides the format, not the name.
    jpeg = io.BytesIO()
    Image.open(painting(tmp_path / "q.png")).save(jpeg, "JPEG")
    assert save(client, "named-png", jpeg.getvalue(), filename="looks.png").status_code == 201
    assert client.get("/api/pictures", headers=auth(ALICE)).json()[0]["name"] == "named-png"


def test_uploads_over_their_declared_length_are_refused_before_reading_and_chunked_ones_are_metered(client, tmp_path):
    """One rule for every body route (the guard's): a chunked body is let in and metered as it comes."""
    body = b'--x\r\nContent-Disposition: form-data; name="name"\r\n\r\nm\r\n--x--\r\n'
    headers = auth(ROOT) | {"Content-Type": "multipart/form-data; boundary=x"}
    chunked = client.post("/api/models", content=iter([body]), headers=headers)  # no Content-Length: sent chunked
    assert chunked.status_code == 422 and "needs a file" in chunked.json()["detail"]  # read, under the limit
    declared = client.post("/api/models", content=body, headers=headers | {"Content-Length": str(10**9)})
    assert declared.status_code == 413


def test_a_chunked_model_upload_over_the_limit_is_413_as_it_streams(tmp_path):
    """Chunked, no length: the guard's meter stops the body at the model's limit, as for a video."""
    settings = Settings(home=tmp_path / "home", tokens=f"root:admin:{ROOT}", max_model_bytes=100_000)
    head = b'--x\r\nContent-Disposition: form-data; name="file"; filename="m.onnx"\r\n\r\n'
    headers = auth(ROOT) | {"Content-Type": "multipart/form-data; boundary=x"}
    with TestClient(create_app(settings)) as small:
        response = small.post("/api/models", content=iter([head] + [b"\0" * 10_000] * 30), headers=headers)
    assert response.status_code == 413 and "RESTYLE_MAX_MODEL_BYTES" in response.json()["detail"]


def test_the_gallery_has_a_thumbnail_of_every_style(client):
    first = client.get("/api/styles/7/thumbnail", headers=auth(BOB))
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(first.content))
    assert image.width == 128
    assert len(client.app.state.context.system.list("gallery/styles/")) == 26
    others = {client.get(f"/api/styles/{n}/thumbnail", headers=auth(BOB)).content for n in (0, 12, 25)}
    assert len(others | {first.content}) == 4  # every style looks different
    assert client.get("/api/styles/26/thumbnail", headers=auth(BOB)).status_code == 404
    assert client.get("/api/styles/7/thumbnail").status_code == 401


def test_reasons_never_show_the_servers_paths(client, tmp_path):
    text = save(client, "text", b"just some text, not a picture").json()["detail"]
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model" * 20)
    model = register(client, "junk", junk, kind="onnx").json()["detail"]
    assert "junk.onnx" in model
    for reason in (text, model):
        assert "/tmp" not in reason and "restyle-catalogue" not in reason, reason


def test_requests_racing_for_the_catalogue_on_a_fresh_service_all_get_it(tmp_path):
    """The first submissions of a new service arrive together: the catalogue (and its tables) is made once."""
    from concurrent.futures import ThreadPoolExecutor

    from restyle.service.catalogue import Catalogue
    from restyle.service.context import Context

    context = Context(Settings(home=tmp_path / "fresh"))
    context.jobs  # noqa: B018 - the job store exists; the catalogue's tables do not yet
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: Catalogue(context).models(), range(16)))
    assert made == [[]] * 16


def test_the_catalogue_on_postgresql(postgres, tmp_path):
    """The same tables on the at-scale job store: models and pictures registered, listed, kept apart by owner."""
    import uuid

    import psycopg

    name = f"cat{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres", autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    settings = Settings(
        home=tmp_path / "home",
        tokens=f"alice:submitter:{ALICE},bob:submitter:{BOB},root:admin:{ROOT}",
        database_url=postgres.url.rsplit("/", 1)[0] + f"/{name}",
    )
    with TestClient(create_app(settings)) as client:
        assert register(client, "negative", negative_model(tmp_path / "neg.onnx")).status_code == 201
        assert register(client, "negative", tmp_path / "neg.onnx").status_code == 409
        assert save(client, "painting", painting(tmp_path / "p.png").read_bytes()).status_code == 201
        assert [m["name"] for m in client.get("/api/models", headers=auth(BOB)).json()] == ["negative"]
        assert client.get("/api/pictures", headers=auth(BOB)).json() == []
        assert client.delete("/api/models/negative", headers=auth(ROOT)).json()["name"] == "negative"
