"""Each multipart part held to its own limit while it streams (issue 26, "a multipart part over its limit").

Before, a job form's body was allowed the video's limit plus the picture's (the route's allowance), and its
parts were counted only after Starlette had spooled the whole form: with RESTYLE_MAX_UPLOAD_BYTES=1 MiB a
20 MB video part was written to a temp file whole before its 413 (failed on 4b5e38b).
"""

from __future__ import annotations

import socket
import tempfile

import httpx
import pytest
from PIL import Image

from tests.service.test_api import ALICE, auth
from tests.service.test_attacks import (
    LIMIT,
    MULTIPART,
    Live,
    _largest_open_file,
    answer,
    head,
    settings_for,
    stream_chunks,
)

BIG = 20 * 1024**2  # the other part's limit, and what the attack sends


@pytest.mark.parametrize(
    ("part", "limits", "setting"),
    [
        ("file", {"max_upload_bytes": LIMIT, "max_picture_bytes": BIG}, "RESTYLE_MAX_UPLOAD_BYTES"),
        ("style_image", {"max_upload_bytes": BIG, "max_picture_bytes": LIMIT}, "RESTYLE_MAX_PICTURE_BYTES"),
    ],
)
def test_a_part_over_its_own_limit_is_413_while_it_streams_and_never_reaches_the_disk(
    tmp_path, monkeypatch, part, limits, setting
):
    """20 MB in one part of a job form, inside the route's allowance (the two limits added) but over the part's
    own limit: 413 naming the part and its setting before 2 MiB are sent, and no temp file over the part's limit,
    in the parser's spill folder or the service's scratch folder, at any time during the upload."""
    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill))  # where the multipart parser spills big parts
    server = Live(settings_for(tmp_path / "home", **limits))
    largest = 0

    def watch() -> None:
        nonlocal largest
        largest = max(largest, _largest_open_file([spill, tmp_path / "home" / "tmp"]))

    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(head("POST", "/api/jobs", None, ALICE, MULTIPART, chunked=True))
            first = f'--xyz\r\nContent-Disposition: form-data; name="{part}"; filename="a.mp4"\r\n\r\n'.encode()
            sent = stream_chunks(sock, first + b"\0" * 65000, BIG, watch)
            status, text, _ = answer(sock, 5)
    finally:
        server.stop()
    assert status == 413 and f"'{part}'" in text and setting in text, (status, text)
    assert "connection: close" in text.lower()
    assert sent < 2 * LIMIT, f"{sent} bytes were taken before the answer ({status}: {text[:200]})"
    assert largest <= LIMIT, f"the server held a {largest}-byte temp file"


def test_a_file_in_a_part_that_takes_none_is_refused_before_its_bytes(tmp_path, monkeypatch):
    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill))
    server = Live(settings_for(tmp_path / "home"))
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(head("POST", "/api/jobs", None, ALICE, MULTIPART, chunked=True))
            first = b'--xyz\r\nContent-Disposition: form-data; name="model"; filename="m.onnx"\r\n\r\n'
            sent = stream_chunks(sock, first + b"\0" * 65000, BIG)
            status, text, _ = answer(sock, 5)
    finally:
        server.stop()
    assert status == 422 and "'model'" in text and "'file' and 'style_image'" in text, (status, text)
    assert sent < LIMIT, f"{sent} bytes were taken before the answer"


def test_a_job_form_within_its_limits_still_makes_a_job(tmp_path, clips):
    """The picture and the video, each under its own limit: the job is made, with the picture's bytes."""
    server = Live(settings_for(tmp_path / "home"))
    picture = tmp_path / "style.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(picture)
    try:
        with clips["silent"].open("rb") as video, picture.open("rb") as style:
            response = httpx.post(
                f"{server.url}/api/jobs",
                files={"file": ("clip.mp4", video, "video/mp4"), "style_image": ("style.png", style, "image/png")},
                data={"model": "style-image"},
                headers=auth(ALICE),
                timeout=30,
            )
    finally:
        server.stop()
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "queued"
