"""Every door, end to end on a real `restyle serve`: a tenant's painting through the API and the CLI, models
registered by name (a picture model and a detector writing records), and inbox drops with and without sidecars."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from restyle.client.client import Client
from restyle.jobspec import JobSpec
from restyle.media.sample import make_clip, make_motion_clip, packaged_photo
from tests.conftest import decode_frames, packets
from tests.service.test_api import sign_in
from tests.service.test_catalogue import ALICE, BOB, ROOT, negative_model, painting

pytestmark = pytest.mark.slow
TOKENS = {
    "RESTYLE_TOKENS": f"alice:submitter:{ALICE},bob:submitter:{BOB},root:admin:{ROOT}",
    "TEST_ADMIN_TOKEN": ROOT,
    "RESTYLE_SIDECAR_WAIT_SECONDS": "1",
}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """Short, with sound: 36 frames at 24 fps."""
    return make_clip(tmp_path_factory.mktemp("doors") / "clip.mp4", width=320, height=180, rate=24, seconds=1.5)


def cli(service, *args, token=ALICE) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "restyle.cli", *args, "--server", service.url, "--token", token],
        env=service.env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / max(mse, 1e-9))


def test_a_tenant_restyles_a_video_like_a_painting_through_the_api_and_the_cli(start_service, clip, tmp_path):
    from restyle.config import Settings
    from restyle.pipeline import run

    service = start_service(TOKENS)
    picture = painting(tmp_path / "painting.png", size=(256, 256))
    alice = Client(service.url, ALICE)

    job = alice.submit(clip, style_image=picture)  # multipart: the video and the painting together
    assert job["model"] == "style-image:painting.png"
    job = service.wait_for(job["id"])
    assert job["state"] == "succeeded", job["reason"]
    through_api = alice.download(job["id"], tmp_path / "api.mp4")

    reference = tmp_path / "here.mp4"  # the same painting through `restyle run`'s pipeline, here
    run(
        clip,
        reference,
        JobSpec(model="style-image", style_image=str(picture)),
        settings=Settings(workers=1, threads=1, chunk_seconds=1),
    )
    (_, source), (_, restyled), (_, expected) = (decode_frames(p) for p in (clip, through_api, reference))
    assert len(restyled) == len(source) == 36
    assert min(psnr(a, b) for a, b in zip(restyled, expected, strict=False)) > 30  # restyled like the painting
    assert np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(restyled, source, strict=False)]) > 20
    assert packets(through_api, "audio") == packets(clip, "audio")  # the sound, bit for bit

    done = cli(
        service,
        "submit",
        str(clip),
        "--style-image",
        str(picture),
        "--strength",
        "0.8",
        "--wait",
        "-o",
        str(tmp_path / "cli.mp4"),
    )
    assert done.returncode == 0, done.stderr
    assert "style-image:painting.png" in done.stdout
    assert packets(tmp_path / "cli.mp4", "audio") == packets(clip, "audio")
    assert len(decode_frames(tmp_path / "cli.mp4")[0]) == 36

    # A saved picture is its owner's alone.
    assert cli(service, "pictures", "add", "mine", str(picture)).returncode == 0
    assert "mine" in cli(service, "pictures", "list").stdout
    assert cli(service, "pictures", "list", token=BOB).stdout.strip() == ""
    refused = cli(service, "submit", str(clip), "--style-image", "mine", token=BOB)
    assert refused.returncode == 2 and "no saved picture named 'mine'" in refused.stderr
    unreadable = tmp_path / "broken.jpg"
    unreadable.write_bytes(b"\xff\xd8\xff not a jpeg")
    refused = cli(service, "submit", str(clip), "--style-image", str(unreadable))
    assert refused.returncode == 2 and "cannot be read as an image" in refused.stderr
    assert all(j["owner"] == "alice" for j in alice.jobs()) and Client(service.url, BOB).jobs() == []


def test_an_admin_registers_models_and_a_submitter_runs_them_by_name(start_service, clip, tmp_path, detector):
    service = start_service(TOKENS)
    added = cli(service, "models", "add", "negative", str(negative_model(tmp_path / "neg.onnx")), token=ROOT)
    assert added.returncode == 0, added.stderr
    assert cli(service, "models", "add", "moderation", str(detector), token=ROOT).returncode == 0
    listed = cli(service, "models", "list").stdout
    assert "negative" in listed and "moderation" in listed and "records" in listed
    refused = cli(service, "models", "add", "mine", str(tmp_path / "neg.onnx"))
    assert refused.returncode == 2 and "403" in refused.stderr  # submitters do not register models
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(os.urandom(4000))
    refused = cli(service, "models", "add", "junk", str(junk), token=ROOT)
    assert refused.returncode == 2 and "does not load" in refused.stderr
    refused = cli(service, "submit", str(clip), "--model", "nope")
    assert refused.returncode == 2 and "unknown model 'nope'" in refused.stderr

    done = cli(service, "submit", str(clip), "--model", "negative", "--wait", "-o", str(tmp_path / "neg.mp4"))
    assert done.returncode == 0, done.stderr
    (_, source), (_, negated) = decode_frames(clip), decode_frames(tmp_path / "neg.mp4")
    assert len(negated) == len(source)
    assert np.mean([np.abs((255 - a.astype(int)) - b).mean() for a, b in zip(source, negated, strict=False)]) < 6

    pan = make_motion_clip(
        tmp_path / "pan.mp4", packaged_photo(), motion="pan", width=320, height=360, rate=10, seconds=1.5
    )
    done = cli(service, "submit", str(pan), "--model", "moderation", "--wait", "-o", str(tmp_path / "faces.jsonl"))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (tmp_path / "faces.jsonl").read_text().splitlines()]
    assert len(lines) == len(decode_frames(pan)[0]) == 15
    assert [line["frame"] for line in lines] == list(range(15))
    job = Client(service.url, ALICE).jobs()[0]
    assert job["model"] == "moderation" and job["records"]["frames_with_detections"] > 0
    assert job["records"]["detections"].get("FACE_FEMALE", 0) > 0, job["records"]
    with httpx.Client(base_url=service.url) as browser:
        sign_in(browser, ALICE)
        page = browser.get(f"/jobs/{job['id']}").text
    assert 'id="with-detections"' in page and "FACE_FEMALE" in page and 'id="after"' not in page


def test_inbox_drops_run_their_sidecars_model_and_the_default_without_one(start_service, clip, tmp_path):
    service = start_service(TOKENS | {"RESTYLE_INBOX_SPEC": '{"style": "4"}'})
    admin = Client(service.url, ROOT)
    admin.add_model("negative", negative_model(tmp_path / "neg.onnx"))
    inbox = service.home / "data" / "inbox" / "drops"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / "a.mp4.json").write_text('{"model": "negative"}')
    (inbox / "c.mp4.json").write_text('{"model": "negative",')  # cut short: not JSON
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        (inbox / name).write_bytes(clip.read_bytes())
    jobs = {job["input"]: job for job in service.wait_for_jobs(3)}
    ended = {name: service.wait_for(job["id"]) for name, job in jobs.items()}
    assert ended["a.mp4"]["state"] == "succeeded" and ended["a.mp4"]["model"] == "negative"
    assert ended["b.mp4"]["state"] == "succeeded" and ended["b.mp4"]["model"] == "styles:4"
    assert ended["c.mp4"]["state"] == "failed" and "c.mp4.json is not JSON" in ended["c.mp4"]["reason"]
    negated = admin.download(ended["a.mp4"]["id"], tmp_path / "a.mp4")
    (_, source), (_, out) = decode_frames(clip), decode_frames(negated)
    assert np.mean([np.abs((255 - a.astype(int)) - b).mean() for a, b in zip(source, out, strict=False)]) < 6
    assert packets(negated, "audio") == packets(clip, "audio")
