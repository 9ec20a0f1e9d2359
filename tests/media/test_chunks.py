import pytest

from restyle.config import Settings
from restyle.media.chunks import plan_chunks
from restyle.media.probe import probe


@pytest.mark.parametrize("name", ["pal", "ntsc", "vfr", "fast"])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_chunks_cover_every_frame_once(clips, name, workers):
    info = probe(clips[name], Settings())
    chunks = plan_chunks(info, chunk_seconds=1.0, workers=workers)
    assert sum(c.frame_count for c in chunks) == info.frame_count
    assert chunks[0].start_pts == info.frame_pts[0]
    assert chunks[-1].end_pts == info.duration_pts
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.end_pts == after.start_pts
        assert after.first_frame == before.first_frame + before.frame_count
    for chunk in chunks:
        assert chunk.seek_pts <= chunk.start_pts
        assert chunk.seek_pts in info.keyframe_pts


def test_chunk_boundaries_snap_to_keyframes(clips):
    info = probe(clips["pal"], Settings())  # a keyframe every 25 frames (1 s)
    chunks = plan_chunks(info, chunk_seconds=1.1, workers=1)
    assert [c.start_pts for c in chunks] == info.keyframe_pts
    assert all(c.seek_pts == c.start_pts for c in chunks)


def test_long_gops_are_split_for_the_workers(clips):
    info = probe(clips["silent"], Settings())  # 48 frames, one keyframe
    chunks = plan_chunks(info, chunk_seconds=10, workers=2)
    assert len(chunks) == 2
    assert [c.frame_count for c in chunks] == [24, 24]
    assert chunks[1].seek_pts == info.frame_pts[0]


def test_the_last_round_of_chunks_comes_in_halves(clips):
    # pal: 75 frames, a keyframe every 25. At 0.8 s a chunk, 2 workers get 2 rounds of ~19 frames: the first
    # round as it is, the last one's two chunks cut into four of ~9, so that a worker done early takes another half.
    info = probe(clips["pal"], Settings())
    chunks = plan_chunks(info, chunk_seconds=0.8, workers=2)
    counts = [c.frame_count for c in chunks]
    assert sum(counts) == info.frame_count and len(chunks) == 6
    assert min(counts[:2]) >= 18 and max(counts[2:]) <= 10
    alone = plan_chunks(info, chunk_seconds=0.8, workers=1)  # one worker never waits for another: no halves
    assert len(alone) == 4 and min(c.frame_count for c in alone) >= 18


def test_chunks_lead_in_with_frames_of_the_chunk_before(clips):
    info = probe(clips["pal"], Settings())  # keyframes every 25 frames
    chunks = plan_chunks(info, chunk_seconds=1.0, workers=1, lead_frames=5)
    assert chunks[0].lead_pts == chunks[0].start_pts  # nothing before the first
    for chunk in chunks[1:]:
        assert chunk.lead_pts == info.frame_pts[chunk.first_frame - 5]
        assert chunk.seek_pts <= chunk.lead_pts and chunk.seek_pts in info.keyframe_pts
    assert sum(c.frame_count for c in chunks) == info.frame_count  # the lead-in is not owned
