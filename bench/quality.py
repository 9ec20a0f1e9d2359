"""Flicker and style, per-frame against --deflicker, on clips with real motion over a real photo.

    python bench/quality.py            # pan and zoom, 640x360, 8 s, styles 7 and 19 (about 8 minutes on 2 cores)
    python bench/quality.py --quick    # 4 s clips, style 7 only

For each clip and style it runs `restyle run` end to end twice, without and with
--deflicker (default settings: chunks of 4 s, one worker per core), and prints:

* warping error (restyle.quality: Farneback flow of the input, forward-backward mask),
  over all frame pairs, at the chunk starts and elsewhere, and the input's own (floor);
* PSNR and SSIM of each output against the per-frame stylisation (the model on every
  decoded input frame, nothing smoothed, nothing encoded);
* end-to-end frames per second of both runs and the deflicker's throughput cost;
* the seam: the pan clip cut into 1 s chunks, with the deflicker, against the same
  clip in one unbroken chunk, measured at the chunk starts and elsewhere.

Targets (issue 7): warping error at least 30% lower, SSIM to the per-frame
stylisation >= 0.85, throughput cost <= 25%.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import decode_all, machine

from restyle import JobSpec, run
from restyle.config import Settings
from restyle.media.deflicker import DEFAULT_STRENGTH
from restyle.media.sample import make_motion_clip, packaged_photo
from restyle.pipeline.reference import model_frames
from restyle.quality import QualityReport, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--strength", type=float, default=DEFAULT_STRENGTH)
    parser.add_argument("--styles", help="comma-separated styles (default 7,19; 7 with --quick)")
    args = parser.parse_args()
    seconds, styles = (4, ["7"]) if args.quick else (8, ["7", "19"])
    styles = args.styles.split(",") if args.styles else styles
    print(f"# bench/quality.py, {date.today()}, {machine()}")
    print(f"clips 640x360 25 fps {seconds} s over {packaged_photo().name}; deflicker {args.strength}\n")
    print(
        "| clip | style | run | warping error | at chunk starts | elsewhere | input's own | "
        "PSNR to per-frame | SSIM to per-frame | fps |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="restyle-bench-") as tmp:
        root = Path(tmp)
        for motion in ("pan", "zoom"):
            clip = make_motion_clip(root / f"{motion}.mp4", packaged_photo(), motion=motion, seconds=seconds)
            for style in styles:
                spec = JobSpec(style=str(style))
                reference = list(model_frames(clip, spec))
                rows = {}
                for name, strength in (("per-frame", 0.0), ("deflicker", args.strength)):
                    output = root / f"{motion}-{style}-{name}.mp4"
                    report = run(clip, output, spec.model_copy(update={"deflicker": strength}), settings=Settings())
                    figures = measure(clip, output, reference=iter(reference), chunk_starts=report.chunk_starts)
                    rows[name] = (figures, report.fps)
                    print(_row(motion, style, name, figures, report.fps), flush=True)
                verdicts.append(_verdict(motion, style, rows))
        seam(root / "pan.mp4", JobSpec(style=str(styles[0])), args.strength, root)
    print()
    for line in verdicts:
        print(line)


def seam(clip: Path, spec: JobSpec, strength: float, root: Path) -> None:
    """Chunks of 1 s against one unbroken chunk: does the join show?"""
    print(f"\nseam, pan, style {spec.style}: warping error at the 1 s chunk starts and elsewhere\n")
    print("| run | chunks | at chunk starts | elsewhere |")
    print("| --- | --- | --- | --- |")
    starts: list[int] = []
    smooth = spec.model_copy(update={"deflicker": strength})
    for name, job, settings in (
        ("deflicker, 1 s chunks", smooth, Settings(chunk_seconds=1)),
        ("deflicker, one chunk", smooth, Settings(chunk_seconds=3600, workers=1)),
        ("per-frame, 1 s chunks", spec, Settings(chunk_seconds=1)),
    ):
        report = run(clip, root / f"seam-{report_name(name)}.mp4", job, settings=settings)
        starts = starts or report.chunk_starts
        figures = measure(clip, root / f"seam-{report_name(name)}.mp4", chunk_starts=starts)
        print(
            f"| {name} | {report.chunks} | {figures.boundary_warping_error:.5f} | "
            f"{figures.interior_warping_error:.5f} |",
            flush=True,
        )
    # What a keyframe alone does: the unbroken output encoded again, with and without keyframes at the chunk starts.
    frames = decode_all(root / f"seam-{report_name('deflicker, one chunk')}.mp4")
    for name, keyframes in (
        ("one chunk, re-encoded, keyframes at the chunk starts", set(starts)),
        ("one chunk, re-encoded, one keyframe", {0}),
    ):
        _encode(frames, root / "again.mp4", keyframes)
        figures = measure(clip, root / "again.mp4", chunk_starts=starts)
        print(
            f"| {name} | 1 | {figures.boundary_warping_error:.5f} | {figures.interior_warping_error:.5f} |", flush=True
        )


def report_name(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name)


def _encode(frames: list, path: Path, keyframes: set[int]) -> None:
    """x264 as restyle encodes segments (crf 18, veryfast), keyframes exactly where asked."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast", "g": "100000", "sc_threshold": "0", "threads": "1"}
        for n, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = n
            frame.pict_type = av.video.frame.PictureType.I if n in keyframes else av.video.frame.PictureType.NONE
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _row(motion: str, style: str, name: str, q: QualityReport, fps: float) -> str:
    return (
        f"| {motion} | {style} | {name} | {q.warping_error:.5f} | {q.boundary_warping_error or 0:.5f} | "
        f"{q.interior_warping_error or 0:.5f} | {q.input_warping_error:.5f} | "
        f"{q.psnr:.2f} dB | {q.ssim:.4f} | {fps:.2f} |"
    )


def _verdict(motion: str, style: str, rows: dict[str, tuple[QualityReport, float]]) -> str:
    (before, fps_before), (after, fps_after) = rows["per-frame"], rows["deflicker"]
    lower = 1 - after.warping_error / before.warping_error
    cost = 1 - fps_after / fps_before
    ok = lower >= 0.30 and after.ssim >= 0.85 and cost <= 0.25
    return (
        f"{motion} style {style}: warping error {lower:.0%} lower (target >= 30%), SSIM {after.ssim:.3f} "
        f"(target >= 0.85), throughput cost {cost:.0%} (target <= 25%): {'all met' if ok else 'NOT all met'}"
    )


if __name__ == "__main__":
    main()
