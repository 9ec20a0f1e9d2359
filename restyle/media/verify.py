"""Check a written output against its input before it is delivered: frames, length, where each stream starts.

Reads the output's packets (no decoding). The figures go into the run's report (and a
job's figures); an output whose length or sound offsets are off is refused, never delivered.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import av

from restyle.errors import OutputError
from restyle.media.probe import VideoInfo, first_packet_times

TOLERANCE_S = 0.002  # MP4 edit lists and Matroska keep times to the millisecond


@dataclass
class OutputCheck:
    frames: list[int]  # [input, output]
    duration_s: list[float]  # [input, output]
    av_offsets_s: list[list[float]] = field(
        default_factory=list
    )  # per audio stream: [input, output] start - video start
    ok: bool = True
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def verify(info: VideoInfo, output: Path, restyled_frames: int) -> OutputCheck:
    """Compare ``output`` with ``info``; raise OutputError if it is not what was written or its timing moved."""
    try:
        with av.open(str(output)) as container:
            video = container.streams.video[0]
            durations: dict[int, int] = {}
            for packet in container.demux(video):
                if packet.size and packet.pts is not None:
                    durations[packet.pts] = packet.duration or 0
            pts = sorted(durations)
            tb = video.time_base
        with av.open(str(output)) as container:
            audio = [s for s in container.streams if s.type == "audio"]
            found = first_packet_times(container, audio)
            starts = [found.get(s.index) for s in audio]
    except (av.FFmpegError, IndexError) as exc:
        raise OutputError(f"the output {output.name} cannot be read back: {exc}") from None
    if not pts:
        raise OutputError(f"the output {output.name} holds no video frames")
    video_start = float(pts[0] * tb)
    last = durations[pts[-1]] or (pts[-1] - pts[-2] if len(pts) > 1 else 0)  # MPEG-TS packets say no duration
    duration = float((pts[-1] + last - pts[0]) * tb)
    check = OutputCheck(frames=[info.frame_count, len(pts)], duration_s=[round(info.duration_s, 4), round(duration, 4)])
    if len(pts) != restyled_frames:
        check.problems.append(f"{restyled_frames} frames were restyled but the output holds {len(pts)}")
    one_frame = info.duration_s / max(1, info.frame_count)
    if abs(duration - info.duration_s) > one_frame + TOLERANCE_S and len(pts) == info.frame_count:
        check.problems.append(f"the output lasts {duration:.3f} s, the input {info.duration_s:.3f} s")
    for facts, start in zip(info.audio_streams, starts, strict=False):
        if facts.start_s is None or start is None:
            continue
        before, after = facts.start_s - info.start_s, start - video_start
        check.av_offsets_s.append([round(before, 4), round(after, 4)])
        if abs(before - after) > TOLERANCE_S:
            check.problems.append(
                f"audio stream {facts.index} starts {after:+.3f} s from the video, the input's {before:+.3f} s"
            )
    check.ok = not check.problems
    if check.problems:
        raise OutputError(f"the output does not match the input, so it is not delivered: {'; '.join(check.problems)}")
    return check
