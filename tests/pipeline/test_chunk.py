"""score_chunk: one chunk decoded, restyled and encoded, and how it fails."""

from __future__ import annotations

import dataclasses
import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from restyle.config import Settings
from restyle.errors import OutputError
from restyle.files import LocalFile
from restyle.handlers.base import OutputKind
from restyle.jobspec import JobSpec
from restyle.media.chunks import plan_chunks
from restyle.media.encode import EncodeSpec
from restyle.media.probe import probe
from restyle.pipeline.chunk import ChunkTask, score_chunk
from restyle.pipeline.sinks import VideoPart
from restyle.stores.segments import FolderSegments
from tests.conftest import decode_frames


class Identity:
    """A model that returns its frames: what is tested here is everything around the model."""

    output = OutputKind.FRAMES

    def __init__(self, seconds: float = 0.0):
        self.seconds = seconds  # per call, as a real model takes: the decoder fills its queue meanwhile

    def predict(self, frames: np.ndarray, spec: JobSpec) -> np.ndarray:
        time.sleep(self.seconds)
        return frames


def _task(clip, tmp_path, **encode) -> ChunkTask:
    info = probe(clip, Settings())
    chunk = plan_chunks(info, chunk_seconds=60)[0]
    spec = EncodeSpec(width=info.width, height=info.height, time_base=info.time_base, rate=info.average_rate, **encode)
    return ChunkTask(
        LocalFile(str(clip)),
        info.video_index,
        chunk,
        VideoPart(spec),
        FolderSegments(tmp_path / "segments"),
        "c0.mp4",
        JobSpec(),
    )


def test_a_chunk_becomes_a_segment_with_every_frame_and_timestamp(clips, tmp_path):
    task = _task(clips["pal"], tmp_path)
    result = score_chunk(task, Identity(), batch_size=1)
    stamps, frames = decode_frames(task.segments.local_path("c0.mp4"))
    assert result.frames == len(frames) == 75
    assert stamps == sorted(stamps) and len(set(stamps)) == 75
    assert result.encode_s > 0 and result.decode_s > 0  # CPU seconds of each stage's thread


def test_an_encoder_that_cannot_start_fails_the_chunk_instead_of_hanging(clips, tmp_path):
    # The encoder fails at its first frame while the decoder has filled its queue: the chunk must
    # end with the encoder's error (it once waited forever for the decoder's last message).
    task = _task(clips["pal"], tmp_path, preset="no-such-preset")
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            score_chunk(task, Identity(seconds=0.3), batch_size=1)
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - the test looks at it below
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "score_chunk hung after its encoder failed"
    assert outcome and isinstance(outcome[0], OutputError) and "no-such-preset" in str(outcome[0])
    assert not task.segments.has("c0.mp4")  # nothing half-written is taken for a finished chunk
    assert not list((tmp_path / "segments").glob("*.partial"))


@pytest.mark.parametrize("preset", ["superfast", "veryfast"])
def test_the_default_x264_params_go_with_superfast_only(preset):
    from restyle.config import SUPERFAST_PARAMS

    settings = Settings(preset=preset)
    assert settings.x264_params_for(preset) == (SUPERFAST_PARAMS if preset == "superfast" else "")
    assert Settings(x264_params="").x264_params_for("superfast") == ""
    assert EncodeSpec(1, 1, Fraction(1, 25), Fraction(25)).preset == Settings().preset == "superfast"


class _Held:
    """A part writer whose ``close`` waits for a gate: the test sets the order in which attempts finish."""

    def __init__(self, writer, before_close: threading.Event, after_close: threading.Event):
        self.writer, self.before_close, self.after_close = writer, before_close, after_close

    @property
    def frames(self) -> int:
        return self.writer.frames

    def write(self, item, pts: int, duration: int) -> None:
        self.writer.write(item, pts, duration)

    def close(self) -> None:
        assert self.before_close.wait(30), "the other attempt never got that far"
        try:
            self.writer.close()
        finally:
            self.after_close.set()

    def abort(self) -> None:
        self.after_close.set()
        self.writer.abort()


class _TwoAttempts:
    """The part of one chunk scored twice at once, as two Ray actors do when the chunk's first actor is taken for
    lost while it still runs (``ActorUnavailableError``) and the chunk is given out again: the second attempt opens
    its segment while the first is writing, and the first finishes while the second is still writing."""

    def __init__(self, part: VideoPart):
        self.part, self.suffix, self.smooths, self.size = part, part.suffix, part.smooths, part.size
        self.second_open, self.first_closed, self.second_closed = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )
        self._count = 0
        self._lock = threading.Lock()

    def writer(self, path, chunk):
        with self._lock:
            attempt, self._count = self._count, self._count + 1
        writer = self.part.writer(path, chunk)
        if attempt == 0:
            return _Held(writer, self.second_open, self.first_closed)
        self.second_open.set()
        return _Held(writer, self.first_closed, self.second_closed)


def test_two_attempts_at_one_chunk_at_once_both_make_it_whole(clips, tmp_path):
    """Issue 26, the lost segment: on 4b5e38b both attempts wrote the same ``.partial`` file, the first renamed it
    to the segment, and the second then found its file gone: ``cannot write segment .../c0.mp4: No such file or
    directory`` (a job on Ray ended dead naming its missing chunk), or left a segment that two writers had mixed."""
    clean = _task(clips["pal"], tmp_path / "clean")
    score_chunk(clean, Identity(), batch_size=4)
    task = _task(clips["pal"], tmp_path / "raced")
    attempts = _TwoAttempts(task.part)
    task = dataclasses.replace(task, part=attempts)
    failures: list[BaseException] = []

    def attempt() -> None:
        try:
            score_chunk(task, Identity(), batch_size=4)
        except BaseException as exc:  # noqa: BLE001 - what the test looks at
            failures.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert attempts.first_closed.is_set() and attempts.second_closed.is_set()
    assert failures == []
    segment = task.segments.local_path("c0.mp4")
    assert segment.read_bytes() == clean.segments.local_path("c0.mp4").read_bytes()  # whole, as one attempt makes it
    assert sorted(p.name for p in segment.parent.iterdir()) == ["c0.mp4"]  # no temporary file left behind
