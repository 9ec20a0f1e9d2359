"""Fuzzing probe, plan and decode with Hypothesis, on a fixed budget (CI runs it as it is).

Whatever bytes arrive, probe returns facts or raises InputError, and a chunk decodes to
frames or raises InputError: nothing else escapes to crash a worker. Whatever a video's
timestamps, the plan covers every frame exactly once.
"""

from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restyle.config import Settings
from restyle.errors import InputError
from restyle.media.chunks import plan_chunks
from restyle.media.decode import decode_chunk
from restyle.media.probe import VideoInfo, probe
from restyle.media.sample import make_clip

BUDGET = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def seed_clip(tmp_path_factory) -> bytes:
    """A small real clip with sound (a keyframe every 10 frames): the bytes the mutations start from."""
    path = make_clip(
        tmp_path_factory.mktemp("fuzz") / "seed.mp4", width=64, height=36, seconds=1.0, keyframe_interval=10
    )
    return path.read_bytes()


mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 1.0), st.just(b"")),
    st.tuples(st.just("overwrite"), st.floats(0.0, 1.0), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("insert"), st.floats(0.0, 1.0), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("zero"), st.floats(0.0, 1.0), st.binary(min_size=1, max_size=256)),
)


def _mutate(data: bytes, steps: list[tuple[str, float, bytes]]) -> bytes:
    out = bytearray(data)
    for kind, where, blob in steps:
        at = int(where * len(out))
        if kind == "truncate":
            del out[at:]
        elif kind == "overwrite":
            out[at : at + len(blob)] = blob
        elif kind == "insert":
            out[at:at] = blob
        else:
            out[at : at + len(blob)] = bytes(len(blob))
    return bytes(out)


def _probe_and_decode(path: Path) -> str:
    """Probe; if the file passes, plan it and decode its first chunk. Only InputError may come out.

    Says how far the file got: ``refused`` by probe, ``decoded`` (frames came out of decode_chunk, or
    decode_chunk refused it part-way), so that a test can tell a fuzzer that reached the decoder from one
    that never got past the probe.
    """
    try:
        info = probe(path, Settings(max_frames=5000))
    except InputError:
        return "refused"
    assert info.frame_count > 0 and info.width > 0 and info.height > 0
    chunk = plan_chunks(info, chunk_seconds=0.5)[0]
    try:
        for _pts, duration, rgb in decode_chunk(str(path), info.video_index, chunk):
            assert rgb.ndim == 3 and duration >= 0
    except InputError:
        return "decode refused"
    return "decoded"


MIN_DECODED = 40  # of the 400 mutations, at least this many must reach decode_chunk (measured: 104)


def test_mutated_videos_give_facts_or_an_input_error(seed_clip, tmp_path):
    outcomes: list[str] = []

    @BUDGET
    @given(steps=st.lists(mutation, min_size=1, max_size=4))
    def mutated(steps):
        path = tmp_path / "mutated.mp4"
        path.write_bytes(_mutate(seed_clip, steps))
        outcomes.append(_probe_and_decode(path))

    mutated()
    reached = sum(outcome != "refused" for outcome in outcomes)
    assert reached >= MIN_DECODED, f"only {reached} of {len(outcomes)} mutations got past the probe to decode_chunk"
    assert "decoded" in outcomes  # and some of them decoded whole


def test_arbitrary_bytes_give_an_input_error(tmp_path):
    outcomes: list[str] = []

    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.binary(min_size=0, max_size=4096))
    def noise(data):
        path = tmp_path / "noise.mp4"
        path.write_bytes(data)
        outcomes.append(_probe_and_decode(path))

    noise()
    assert len(outcomes) >= 40 and set(outcomes) == {"refused"}  # noise is refused by the probe, before any decoding


@st.composite
def videos(draw) -> VideoInfo:
    """Timestamps as real files have them: uneven gaps, keyframes anywhere, a first frame past zero."""
    count = draw(st.integers(1, 400))
    gaps = draw(st.lists(st.integers(1, 3000), min_size=count, max_size=count))
    first = draw(st.integers(0, 10_000))
    pts = [first]
    for gap in gaps[:-1]:
        pts.append(pts[-1] + gap)
    keys = sorted({pts[0]} | {pts[i] for i in draw(st.lists(st.integers(0, count - 1), max_size=30))})
    rate = draw(st.sampled_from([Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(60)]))
    return VideoInfo(
        path="x.mp4",
        size_bytes=1,
        container="mp4",
        video_index=0,
        codec="h264",
        width=64,
        height=36,
        pix_fmt="yuv420p",
        time_base=Fraction(1, 90_000),
        average_rate=rate,
        rotation=0,
        frame_pts=pts,
        keyframe_pts=keys,
        duration_pts=pts[-1] + gaps[-1],
        other_streams=[],
    )


@settings(max_examples=300, deadline=None, derandomize=True)
@given(info=videos(), chunk_seconds=st.floats(0.01, 30), workers=st.integers(1, 16), lead=st.integers(0, 16))
def test_any_plan_covers_every_frame_exactly_once(info, chunk_seconds, workers, lead):
    chunks = plan_chunks(info, chunk_seconds, workers, lead_frames=lead)
    assert sum(c.frame_count for c in chunks) == info.frame_count
    assert chunks[0].first_frame == 0 and chunks[0].start_pts == info.frame_pts[0]
    assert chunks[-1].end_pts == info.duration_pts
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.end_pts == after.start_pts and after.first_frame == before.first_frame + before.frame_count
    for chunk in chunks:
        assert chunk.frame_count > 0
        assert chunk.seek_pts <= chunk.lead_pts <= chunk.start_pts < chunk.end_pts
        assert chunk.seek_pts in info.keyframe_pts
        assert chunk.lead_pts == info.frame_pts[max(0, chunk.first_frame - lead)]
