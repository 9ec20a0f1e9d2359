"""Encode restyled frames into one chunk's video segment (H.264 by default)."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from restyle.errors import OutputError, WorkDirError
from restyle.files import partial_path
from restyle.machine import cpu_flags


@dataclass(frozen=True)
class EncodeSpec:
    """How segments are encoded; the same for every chunk of a job, so segments join by stream copy."""

    width: int
    height: int
    time_base: Fraction
    rate: Fraction
    codec: str = "libx264"
    crf: int = 18
    preset: str = "superfast"
    x264_params: str = ""  # added to the preset's, e.g. "mbtree=1:rc-lookahead=10" (Settings.x264_params_for)
    pix_fmt: str = "yuv420p"
    threads: int = 1
    sample_aspect_ratio: Fraction | None = None  # anamorphic pictures keep their pixel shape

    @property
    def coded_size(self) -> tuple[int, int]:
        """4:2:0 needs even sides: an odd side grows by one edge pixel (the decoder shows it as is)."""
        if self.pix_fmt.startswith(("yuv420", "nv12", "yuvj420")):
            return self.width + self.width % 2, self.height + self.height % 2
        return self.width, self.height


def _has_avx512() -> bool:
    return {"avx512f", "avx2"} <= cpu_flags()


class SegmentWriter:
    """Write frames with their original timestamps, counted from the chunk's start.

    The file appears at ``path`` only when it is complete (written under a temporary
    name, then renamed): a segment that exists is a finished chunk.
    """

    def __init__(self, path: Path, spec: EncodeSpec, start_pts: int):
        self.path = path
        self._tmp = partial_path(path)  # its own: another attempt at this chunk may write beside it
        self._spec = spec
        self._start = start_pts
        self.frames = 0
        try:
            self._container = av.open(str(self._tmp), "w", format="mp4")
        except (OSError, av.FFmpegError) as exc:
            raise WorkDirError(f"cannot write a segment in {path.parent}: {exc}") from None
        width, height = spec.coded_size
        stream = self._container.add_stream(spec.codec, rate=spec.rate)
        stream.width, stream.height, stream.pix_fmt = width, height, spec.pix_fmt
        stream.time_base = spec.time_base
        stream.codec_context.time_base = spec.time_base
        if spec.sample_aspect_ratio:
            stream.codec_context.sample_aspect_ratio = spec.sample_aspect_ratio
        options = {"threads": str(spec.threads)}
        if spec.codec in ("libx264", "libx265"):
            options |= {"crf": str(spec.crf), "preset": spec.preset}
        if spec.codec == "libx265":
            options["x265-params"] = "log-level=error"
        if spec.codec == "libvpx-vp9":
            # VP9's quality scale runs 0-63: x264's crf 18 looks about like its 32. Realtime speed 8 for
            # the fast presets (encoding must not be the bottleneck), "good" quality speed 4 for the others.
            fast = spec.preset in ("ultrafast", "superfast", "veryfast", "faster", "fast")
            options |= {
                "crf": str(min(63, round(spec.crf * 1.75))),
                "b": "0",
                "row-mt": "1",
                "deadline": "realtime" if fast else "good",
                "cpu-used": "8" if fast else "4",
            }
        if spec.codec == "libx264":
            # x264's AVX-512 kernels were seen to encode the same frames differently depending on what ran
            # on the thread before (onnxruntime's AVX-512 code): segments redone after a crash then differ.
            # Its AVX2 kernels give the same bytes every time (bench/RESULTS.md, reliability).
            params = ["asm=avx2"] if _has_avx512() else []
            if spec.x264_params:
                params.append(spec.x264_params)
            if params:
                options["x264-params"] = ":".join(params)
        stream.options = options
        # PyAV would open the codec with its own thread count (0: one per core) over the "threads" option.
        stream.codec_context.thread_count = spec.threads
        self._stream = stream

    def write(self, rgb: np.ndarray, pts: int, duration: int) -> None:
        width, height = self._spec.coded_size
        if rgb.shape[1] != width or rgb.shape[0] != height:
            rgb = np.pad(rgb, ((0, height - rgb.shape[0]), (0, width - rgb.shape[1]), (0, 0)), mode="edge")
        # A view of the array, not a copy: the encoder converts it to yuv420p before this call returns.
        frame = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = pts - self._start
        frame.duration = duration
        frame.time_base = self._spec.time_base
        try:
            packets = self._stream.encode(frame)  # the first call opens the encoder with the options
        except (av.ArgumentError, av.PatchWelcomeError, av.OptionNotFoundError) as exc:
            params = f", x264 params {self._spec.x264_params!r}" if self._spec.x264_params else ""
            raise OutputError(
                f"the {self._spec.codec} encoder refused its settings (preset {self._spec.preset!r}{params}): {exc}"
            ) from None
        self._mux(packets)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and publish the segment; on failure (a full disk) nothing is left behind."""
        try:
            self._mux(self._stream.encode(None))
            self._container.close()
            os.replace(self._tmp, self.path)
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise WorkDirError(f"cannot write segment {self.path}: {getattr(exc, 'strerror', None) or exc}") from None

    def abort(self) -> None:
        """Drop a half-written segment."""
        with contextlib.suppress(Exception):
            self._container.close()
        self._tmp.unlink(missing_ok=True)

    def _mux(self, packets: list[av.Packet]) -> None:
        try:
            self._container.mux(packets)
        except OSError as exc:
            raise WorkDirError(f"cannot write segment {self.path}: {exc}") from None
