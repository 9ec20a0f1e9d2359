"""What a job's output is, one object per kind of model output, chosen once: ``SINKS[handler.output]``.

A sink refuses an output it cannot write (before the input is read), plans the part each
chunk writes (a video segment, or a records model's JSON Lines), and delivers the parts
as the job's output: assembled with the input's other streams and verified, or joined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Protocol

from restyle.config import Settings
from restyle.errors import OutputError
from restyle.handlers.base import Handler, OutputKind
from restyle.jobspec import JobSpec
from restyle.media.assemble import OutputPlan, assemble, container_for, plan_output
from restyle.media.chunks import Chunk
from restyle.media.encode import EncodeSpec, SegmentWriter
from restyle.media.probe import VideoInfo
from restyle.media.verify import verify
from restyle.pipeline.chunk import PartSpec, PartWriter
from restyle.pipeline.records import RecordsWriter, join_records


@dataclass(frozen=True)
class VideoPart:
    """A chunk's video segment, encoded as every other chunk's so that they join by stream copy."""

    encode: EncodeSpec
    suffix = "mp4"
    smooths = True

    @property
    def size(self) -> tuple[int, int]:
        return self.encode.width, self.encode.height

    def writer(self, path: Path, chunk: Chunk) -> PartWriter:
        return SegmentWriter(path, self.encode, chunk.start_pts)


@dataclass(frozen=True)
class RecordsPart:
    """A chunk's records: a JSON line per frame, timed by the input's time base."""

    time_base: Fraction
    size: tuple[int, int]  # the input's frames (what the model runs on)
    suffix = "jsonl"
    smooths = False

    def writer(self, path: Path, chunk: Chunk) -> PartWriter:
        return RecordsWriter(path, self.time_base, chunk.first_frame)


@dataclass(frozen=True)
class Planned:
    """The output a run will deliver: the part its chunks write, and (videos) how the output is muxed."""

    part: PartSpec
    key: str  # what of the output goes into the work key: parts made otherwise are never reused
    target: OutputPlan | None = None


@dataclass
class Delivered:
    frames: int  # written to the output
    notes: list[str] = field(default_factory=list)
    records: dict | None = None  # records models: the summary
    output_check: dict = field(default_factory=dict)  # videos: the output read back and checked


class Sink(Protocol):
    def check(self, output: Path, label: str) -> None:
        """Refuse an output this sink cannot write, before the input is read."""
        ...

    def plan(self, info: VideoInfo, output: Path, spec: JobSpec, handler: Handler, settings: Settings) -> Planned: ...

    def deliver(
        self, info: VideoInfo, parts: list[tuple[Chunk, Path]], partial: Path, planned: Planned, label: str
    ) -> Delivered:
        """Write the job's output at ``partial`` from the chunks' parts, in order."""
        ...


class VideoSink:
    def check(self, output: Path, label: str) -> None:
        if output.suffix.lower() == ".jsonl":
            raise OutputError(
                f"{label} makes pictures, not records: give a video output such as {output.with_suffix('.mp4').name}"
            )
        container_for(output)  # a suffix restyle cannot write is refused before the input is read

    def plan(self, info: VideoInfo, output: Path, spec: JobSpec, handler: Handler, settings: Settings) -> Planned:
        target = plan_output(info, output, spec.output.codec or settings.codec)
        width, height = handler.output_size(spec, info.width, info.height)
        preset = spec.output.preset or settings.preset
        encode = EncodeSpec(
            width=width,
            height=height,
            time_base=info.time_base,
            rate=info.average_rate,
            codec=target.encoder,
            crf=settings.crf if spec.output.crf is None else spec.output.crf,
            preset=preset,
            x264_params=settings.x264_params_for(preset),
            pix_fmt=settings.pix_fmt,
            threads=settings.encoder_threads,
            sample_aspect_ratio=info.sample_aspect_ratio,
        )
        return Planned(VideoPart(encode), str(encode), target)

    def deliver(
        self, info: VideoInfo, parts: list[tuple[Chunk, Path]], partial: Path, planned: Planned, label: str
    ) -> Delivered:
        assert planned.target is not None and isinstance(planned.part, VideoPart)
        assembled = assemble(info, parts, partial, planned.target)
        checked = verify(info, partial, assembled.video_packets)
        return Delivered(
            assembled.video_packets,
            _video_notes(info, planned.part.encode, planned.target, label),
            output_check=checked.to_dict(),
        )


class RecordsSink:
    def check(self, output: Path, label: str) -> None:
        if output.suffix.lower() != ".jsonl":
            raise OutputError(
                f"{label} writes records, one JSON line per frame: give an output such as "
                f"{output.with_suffix('.jsonl').name}"
            )

    def plan(self, info: VideoInfo, output: Path, spec: JobSpec, handler: Handler, settings: Settings) -> Planned:
        return Planned(RecordsPart(info.time_base, (info.width, info.height)), f"records|{info.time_base}")

    def deliver(
        self, info: VideoInfo, parts: list[tuple[Chunk, Path]], partial: Path, planned: Planned, label: str
    ) -> Delivered:
        summary = join_records([path for _, path in parts], partial)
        return Delivered(summary["frames"], records=summary)


SINKS: dict[OutputKind, Sink] = {OutputKind.FRAMES: VideoSink(), OutputKind.RECORDS: RecordsSink()}


def _video_notes(info: VideoInfo, encode: EncodeSpec, target: OutputPlan, label: str) -> list[str]:
    """What the output does not carry over from the input, or changes: size, alpha, bit depth."""
    notes = list(target.notes)
    if encode.coded_size != (encode.width, encode.height):
        notes.append(
            f"{encode.width}x{encode.height} is odd-sized; {encode.pix_fmt} needs even sides, "
            f"so the output is {encode.coded_size[0]}x{encode.coded_size[1]}"
        )
    if (encode.width, encode.height) != (info.width, info.height):
        notes.append(f"{label} scales the picture: {info.width}x{info.height} in, {encode.width}x{encode.height} out")
    source = info.pix_fmt
    if source.startswith(("yuva", "gbrap", "ya")) or source in ("rgba", "bgra", "argb", "abgr"):
        notes.append(f"the input's alpha channel ({source}) is not kept: {encode.pix_fmt} output is opaque")
    if any(depth in source for depth in ("p10", "p12", "p14", "p16")):
        notes.append(f"the input is high bit depth ({source}); the output is 8-bit {encode.pix_fmt}")
    return notes
