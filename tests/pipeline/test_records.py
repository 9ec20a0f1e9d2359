"""Records out: a real detector over a real photo panned by a virtual camera, one JSON line per frame."""

import json

import pytest

from restyle import JobSpec, run
from restyle.config import Settings
from restyle.errors import OutputError
from restyle.media.sample import make_motion_clip
from tests.conftest import decode_frames

pytestmark = pytest.mark.slow

FACE = (168.4, 139.8, 359.0, 341.5)  # the face in grace_hopper.jpg (512x600), found by the detector on the photo


@pytest.fixture(scope="module")
def portrait_pan(tmp_path_factory, photo):
    """A 240x320 window crossing the photo left to right over 2 s: the face moves right to left in the frame."""
    return make_motion_clip(
        tmp_path_factory.mktemp("pan") / "pan.mp4", photo, motion="pan", width=240, height=320, seconds=2
    )


def expected_face_centre_x(frame: int, frames: int = 50) -> float:
    """Where the face's centre is in frame ``frame``: make_motion_clip's camera, undone."""
    view_w = min(512, 600 * 240 / 320)
    window = 0.65 * view_w
    x0 = frame / (frames - 1) * (512 - window)
    return ((FACE[0] + FACE[2]) / 2 - x0) * 240 / window


def test_the_face_box_follows_the_pan_frame_by_frame(portrait_pan, detector, tmp_path):
    output = tmp_path / "faces.jsonl"
    report = run(
        portrait_pan,
        output,
        JobSpec(model="yolo", model_file=str(detector)),
        settings=Settings(workers=2, threads=1, chunk_seconds=0.5),
    )
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    in_pts, _ = decode_frames(portrait_pan)
    assert report.chunks >= 4 and report.frames == len(lines) == len(in_pts) == 50
    assert [line["pts"] for line in lines] == in_pts  # in order, across chunks
    assert [line["frame"] for line in lines] == list(range(50))
    assert lines[25]["time"] == pytest.approx(1.0)
    centres = {}
    for line in lines:
        faces = [box for box in line["boxes"] if box["class"] == "FACE_FEMALE"]
        if faces:
            x1, _, x2, _ = faces[0]["box"]
            centres[line["frame"]] = (x1 + x2) / 2
    assert len(centres) >= 45
    whole = [n for n in centres if 15 <= n <= 37]  # frames where the whole face is in view
    for n in whole:
        assert centres[n] == pytest.approx(expected_face_centre_x(n), abs=12), n
    ordered = [centres[n] for n in sorted(centres)]
    assert all(later < earlier + 3 for earlier, later in zip(ordered, ordered[1:], strict=False))  # it only moves left
    assert report.records["frames_with_detections"] >= 45 and report.records["detections"]["FACE_FEMALE"] >= 45


def test_records_parts_resume_like_segments_and_the_output_must_be_jsonl(portrait_pan, detector, tmp_path):
    spec = JobSpec(model="yolo", model_file=str(detector), params={"confidence": 0.5})
    settings = Settings(workers=1, threads=2, chunk_seconds=0.5)
    first = run(portrait_pan, tmp_path / "a.jsonl", spec, settings=settings, work=tmp_path / "work")
    second = run(portrait_pan, tmp_path / "b.jsonl", spec, settings=settings, work=tmp_path / "work")
    assert first.chunks_reused == 0 and second.chunks_reused == second.chunks >= 4
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    with pytest.raises(OutputError, match=r"writes records.*\.jsonl"):
        run(portrait_pan, tmp_path / "faces.mp4", spec, settings=settings)
    with pytest.raises(OutputError, match="makes pictures"):
        run(portrait_pan, tmp_path / "styled.jsonl", JobSpec(style="3"), settings=settings)
