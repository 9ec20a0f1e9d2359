from pathlib import Path

import av
import pytest

from restyle.config import Settings
from restyle.errors import InputError
from restyle.media.probe import probe


def test_probe_reads_the_facts_of_a_clip(clips):
    info = probe(clips["pal"], Settings())
    assert (info.width, info.height) == (320, 180)
    assert info.frame_count == 75
    assert info.duration_s == pytest.approx(3.0)
    assert info.average_rate == 25
    assert [s.codec for s in info.audio_streams] == ["aac"]
    assert info.keyframe_pts[0] == info.frame_pts[0]
    assert len(info.keyframe_pts) == 3  # one keyframe per 25 frames
    assert not info.is_variable_rate


def test_probe_sees_variable_rate_and_rotation(clips):
    assert probe(clips["vfr"], Settings()).is_variable_rate
    assert probe(clips["rotated"], Settings()).rotation == 90


def test_probe_counts_ntsc_frames_exactly(clips):
    info = probe(clips["ntsc"], Settings())
    assert info.average_rate == pytest.approx(30000 / 1001)
    assert info.frame_count == 75


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.mp4", b"", "empty"),
        ("noise.mp4", bytes(range(256)) * 64, "cannot read"),
        ("notes.mp4", b"this is a text file, not a video\n" * 20, "cannot read"),
    ],
)
def test_probe_refuses_what_is_not_a_video(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=reason):
        probe(path, Settings())


def test_probe_refuses_a_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        probe(tmp_path / "nope.mp4", Settings())


def test_probe_refuses_audio_only(tmp_path):
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as out, av.open("sine=duration=1", format="lavfi") as tone:
        stream = out.add_stream("aac", rate=44100)
        for frame in tone.decode(audio=0):
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(InputError, match="no video stream"):
        probe(path, Settings())


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_probe_refuses_a_truncated_file(clips, tmp_path, keep):
    data = Path(clips["pal"]).read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError):
        probe(path, Settings())


def test_probe_enforces_limits(clips):
    with pytest.raises(InputError, match="RESTYLE_MAX_PIXELS"):
        probe(clips["pal"], Settings(max_pixels=320 * 100))
    with pytest.raises(InputError, match="RESTYLE_MAX_DURATION_S"):
        probe(clips["pal"], Settings(max_duration_s=1))
