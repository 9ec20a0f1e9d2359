"""Measure a restyled video: how much it flickers, and how far it is from the per-frame stylisation.

* **Warping error** (Lai et al. 2018, "Learning Blind Video Temporal Consistency"): the
  mean squared difference (pixels on 0..1) between output frame t and output frame t-1
  warped to t by the optical flow of the *input* frames, over the pixels where that
  flow passes the forward-backward check. Lower is steadier. The flow here is
  Farneback's, a different method from the DIS flow the deflicker uses, so the measure
  does not simply reward agreeing with our own flow. The input's own warping error is
  reported beside it: the floor that flow and codec errors set.
* **Boundary** warping error: the same, only at the first frame of each chunk (against
  the last frame of the chunk before), to show whether chunks join without a seam.
* **PSNR / SSIM** of the output against a reference (the per-frame stylisation): how
  much of the style survives; a deflicker that just blurred would lose here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import numpy as np

from restyle.errors import InputError
from restyle.media.flow import FlowEstimator, gray, reliable, warp
from restyle.quality.metrics import psnr, ssim, warping_error


@dataclass
class QualityReport:
    """The figures of one output video, against its input (and a reference, if given)."""

    frames: int
    warping_error: float  # mean over frame pairs, pixels on 0..1, squared
    input_warping_error: float  # the same measure on the input itself: the floor
    boundary_warping_error: float | None = None  # only at chunk starts
    interior_warping_error: float | None = None  # every other pair
    psnr: float | None = None  # against the reference, mean over frames
    ssim: float | None = None
    per_frame: list[float] = field(default_factory=list, repr=False)  # warping error of pair (t-1, t), t >= 1

    def to_dict(self, per_frame: bool = False) -> dict:
        figures = asdict(self)
        if not per_frame:
            figures.pop("per_frame")
        return figures

    def summary(self) -> str:
        parts = [
            f"{self.frames} frames",
            f"warping error {self.warping_error:.5f} (input {self.input_warping_error:.5f})",
        ]
        if self.boundary_warping_error is not None:
            parts.append(
                f"at chunk starts {self.boundary_warping_error:.5f}, elsewhere {self.interior_warping_error:.5f}"
            )
        if self.psnr is not None:
            parts.append(f"against the reference PSNR {self.psnr:.2f} dB, SSIM {self.ssim:.4f}")
        return ", ".join(parts)


Video = str | Path | Iterable[np.ndarray]  # a file, or its decoded RGB frames


def measure(
    input: Video, output: Video, reference: Video | None = None, chunk_starts: Iterable[int] = ()
) -> QualityReport:
    """Warping error of ``output`` along ``input``'s motion; PSNR/SSIM against ``reference`` if given.

    Each is a video file or the frames themselves; ``reference`` is typically the model
    run on each input frame (:func:`restyle.pipeline.reference.model_frames`). ``chunk_starts`` are the indexes of
    the frames that start a chunk (``RunReport.chunk_starts``).
    """
    starts = set(chunk_starts) - {0}
    flow = FlowEstimator("farneback")
    errors: list[float] = []
    input_errors: list[float] = []
    fidelity: list[tuple[float, float]] = []
    refs = frames_of(reference) if reference is not None else None
    previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    count = 0
    for frame, out in _paired(frames_of(input), frames_of(output), input, output):
        count += 1
        luma = gray(frame)
        if previous is not None:
            prev_luma, prev_frame, prev_out = previous
            back = flow(luma, prev_luma)
            mask = reliable(back, flow(prev_luma, luma))
            errors.append(warping_error(out, warp(prev_out, back), mask))
            input_errors.append(warping_error(frame, warp(prev_frame, back), mask))
        if refs is not None:
            ref = next(refs, None)
            if ref is None:
                raise InputError(f"the reference has fewer frames than {_name(output)}")
            fidelity.append((psnr(out, ref), ssim(out, ref)))
        previous = (luma, frame, out)
    if count < 2:
        raise InputError(f"{_name(output)} has {count} frame(s); the warping error needs at least two")
    report = QualityReport(
        frames=count, warping_error=_mean(errors), input_warping_error=_mean(input_errors), per_frame=errors
    )
    if starts:
        at = [e for t, e in enumerate(errors, start=1) if t in starts]
        rest = [e for t, e in enumerate(errors, start=1) if t not in starts]
        report.boundary_warping_error, report.interior_warping_error = _mean(at), _mean(rest)
    if fidelity:
        report.psnr = _mean([p for p, _ in fidelity if np.isfinite(p)] or [float("inf")])
        report.ssim = _mean([s for _, s in fidelity])
    return report


def frames_of(video: Video) -> Iterator[np.ndarray]:
    """The RGB frames of a video file, or the frames given."""
    if not isinstance(video, (str, Path)):
        yield from video
        return
    path = video
    try:
        with av.open(str(path), metadata_errors="replace") as container:
            if not container.streams.video:
                raise InputError(f"{path} has no video stream")
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
    except (av.FFmpegError, OSError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None


def _name(video: Video) -> str:
    return str(video) if isinstance(video, (str, Path)) else "the frames given"


def _paired(
    inputs: Iterator[np.ndarray], outputs: Iterator[np.ndarray], input: Video, output: Video
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for count, (frame, out) in enumerate(itertools.zip_longest(inputs, outputs)):
        if frame is None or out is None:
            more, fewer = (_name(output), _name(input)) if frame is None else (_name(input), _name(output))
            raise InputError(f"{more} has more frames than {fewer} ({count}): not the same video")
        if out.shape[:2] != frame.shape[:2]:
            # Odd sizes come out padded by one edge pixel: compare the input's area.
            height, width = frame.shape[:2]
            if out.shape[0] < height or out.shape[1] < width:
                raise InputError(
                    f"{_name(output)} is {out.shape[1]}x{out.shape[0]}, {_name(input)} is {width}x{height}: "
                    "not the same video"
                )
            out = out[:height, :width]
        yield frame, out


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0
