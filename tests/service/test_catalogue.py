"""The catalogue through the API, in-process: registered models (admins) and saved style pictures
(each tenant's own)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from restyle.config import Settings
from restyle.service.http.app import create_app
from testing.models import negative_model
from testing.servers import missing

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
    assert refused.status_code == 422 and "not a picture restyle reads" in refused.json()["detail"]
    truncated = painting(tmp_path / "p.png").read_bytes()[:200]
    assert save(client, "truncated", truncated).status_code == 422
    huge = io.BytesIO()
    Image.new("RGB", (400, 400), "white").save(huge, "PNG")  # small file, too many pixels
    refused = save(client, "huge", huge.getvalue())
    assert refused.status_code == 422 and "RESTYLE_MAX_PICTURE_PIXELS" in refused.json()["detail"]
    Image.new("RGB", (600, 600), "white").save(huge := io.BytesIO(), "PNG")  # past twice it: PIL's own refusal
    refused = save(client, "huger", huge.getvalue())
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


# -- hostile pictures (issue 26, finding 1): only raster formats are decoded, and PIL's own limit is set -----------

EPS_LOOP = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n{} loop\n"  # Ghostscript would run it forever


def png_bomb(side: int = 13000) -> bytes:
    """A valid RGB PNG of side x side black pixels in ~0.5 MB: 507 MB once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, rows = zlib.compressobj(9), b"\0" * (1 + 3 * side) * 100
    body = b"".join(packer.compress(rows) for _ in range(side // 100)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def ico_bomb() -> bytes:
    """An ICO whose one entry (a 256x256 icon, says its directory) is the 13000x13000 PNG above."""
    png = png_bomb()
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(png), 22) + png


def _descendants(pid: int) -> list[str]:
    """The command names of every process under ``pid``."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
            except (OSError, IndexError):
                continue
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            with contextlib.suppress(OSError):
                found.append(Path(f"/proc/{child}/comm").read_text().strip())
            todo.append(child)
    return found


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


def test_a_looping_eps_and_an_ico_bomb_are_refused_fast_and_never_decoded(start_service):
    """Failed on 4b5e38b: the EPS request hung (PIL ran Ghostscript on it, a `gs` process looping under the API)
    and the ICO's 13000x13000 PNG was decoded. Now both are 422, at once, with the formats restyle reads."""
    if shutil.which("gs") is None:
        missing("Ghostscript (gs), to show that a tenant's PostScript never reaches it")
    service = start_service({"RESTYLE_LOCAL_WORKERS": "0", "RESTYLE_MAX_PICTURE_BYTES": str(2 * 1024**2)})
    before = _peak_rss_mb(service.process.pid)
    for name, data in (("loop", EPS_LOOP), ("bomb", ico_bomb())):
        clock = time.monotonic()
        try:
            answer = service.http.post(
                "/api/pictures", files={"file": (f"{name}.png", data)}, data={"name": name}, timeout=15
            )
        except httpx.ReadTimeout:
            pytest.fail(f"{name}: no answer in 15 s (the API process runs {_descendants(service.process.pid)})")
        assert answer.status_code == 422, answer.text
        assert "not a picture restyle reads (JPEG, PNG" in answer.json()["detail"]
        assert time.monotonic() - clock < 5
    assert "gs" not in _descendants(service.process.pid)
    assert _peak_rss_mb(service.process.pid) - before < 100  # the bomb's 507 MB of pixels were never made
    assert service.http.get("/api/pictures").json() == []


def test_pils_own_pixel_limit_is_the_services(tmp_path):
    """Failed on 4b5e38b (PIL's limit stayed at its 89 Mpixel default, so the bomb decoded): a picture format
    that holds another picture (were one ever allowed) stops at PIL's limit, which check_picture sets."""
    from PIL import Image

    from restyle.service.catalogue import check_picture

    path = painting(tmp_path / "small.png")
    assert check_picture(path, 40_000_000) == (96, 64)
    assert Image.MAX_IMAGE_PIXELS == 40_000_000
    with pytest.raises(Image.DecompressionBombError), Image.open(io.BytesIO(ico_bomb()), formats=("ICO",)) as icon:
        icon.load()


def test_a_worker_opens_a_style_picture_only_as_a_raster_format(tmp_path):
    """Failed on 4b5e38b (hung: PIL ran Ghostscript on the EPS): the style-image handler (a worker's, or `restyle
    run --style-image`) handed any file to PIL. A picture saved before the service's check was tightened is
    refused the same way. Run in a process of its own, so that a Ghostscript that loops is killed with it."""
    eps = tmp_path / "style.png"
    eps.write_bytes(EPS_LOOP)
    script = (
        "import sys; from restyle.handlers.styles import read_style_image\n"
        "try:\n    read_style_image(sys.argv[1]); print('read')\nexcept Exception as exc: print(exc)"
    )
    reader = subprocess.Popen(
        [sys.executable, "-c", script, str(eps)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, _ = reader.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(reader.pid, signal.SIGKILL)
        reader.wait()
        pytest.fail("reading an EPS as a style picture did not end in 30 s (Ghostscript ran it)")
    assert "is not a picture restyle reads (JPEG, PNG" in out, out

    from restyle.handlers.styles import read_style_image

    assert read_style_image(str(painting(tmp_path / "ok.png"))).size == (96, 64)
