"""End to end: real clips in, real videos out, checked frame by frame and packet by packet."""

import numpy as np
import pytest

from restyle import JobSpec, run
from restyle.config import Settings
from restyle.errors import OutputError
from restyle.handlers import Runtime, load
from restyle.handlers.base import params_of
from tests.conftest import decode_frames, duration_s, packets, psnr

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["pal", "ntsc", "vfr", "fast", "silent"])
def test_output_keeps_frames_timestamps_duration_and_audio(clips, settings, tmp_path, name):
    source = clips[name]
    output = tmp_path / "styled.mp4"
    report = run(source, output, JobSpec(style="7"), settings=Settings(workers=2, threads=1, chunk_seconds=1))
    in_pts, _ = decode_frames(source)
    out_pts, frames = decode_frames(output)
    assert report.frames == len(in_pts)
    assert out_pts == in_pts  # same count, same timestamps: frame rate and VFR kept
    assert duration_s(output) == pytest.approx(duration_s(source), abs=0.001)
    assert packets(output, "audio") == packets(source, "audio")  # stream copy, bit-exact
    assert report.chunks >= 2 and report.workers == 2
    assert frames[0].shape == (180, 320, 3) or name == "fast"


def test_rotation_metadata_is_kept(clips, settings, tmp_path):
    output = tmp_path / "rotated.mp4"
    run(clips["rotated"], output, JobSpec(style="1"), settings=settings)
    import av

    with av.open(str(output)) as container:
        assert next(container.decode(video=0)).rotation == 90


def test_odd_sizes_are_padded_to_even_for_yuv420p(clips, settings, tmp_path):
    output = tmp_path / "odd.mp4"
    report = run(clips["odd"], output, JobSpec(style="2"), settings=settings)
    pts, frames = decode_frames(output)
    assert len(pts) == 60
    assert frames[0].shape == (138, 242, 3)
    assert any("odd-sized" in note for note in report.notes)


def test_output_frames_match_the_model_within_one_lossy_encode(clips, settings, tmp_path):
    """Fidelity: our frames against the model's output on the same decoded frames."""
    output = tmp_path / "styled.mp4"
    # At f32 (auto may pick int8 or bf16, judged by the fidelity table): measured here is the pipeline's own loss.
    run(clips["pal"], output, JobSpec(style="7"), settings=settings.model_copy(update={"precision": "f32"}))
    _, originals = decode_frames(clips["pal"])
    _, ours = decode_frames(output)
    model = load(JobSpec(style="7"), Runtime("cpu", threads=2))
    scores = [
        psnr(model.predict(frame[None], params_of(JobSpec(style="7")))[0], mine)
        for frame, mine in zip(originals[::5], ours[::5], strict=False)
    ]
    assert np.mean(scores) >= 33.0, scores


def test_style_image_and_onnx_models_run_end_to_end(clips, settings, tmp_path):
    from PIL import Image

    from tests.handlers.test_onnx_image import negative_model

    picture = tmp_path / "picture.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(picture)
    report = run(
        clips["silent"], tmp_path / "a.mp4", JobSpec(model="style-image", style_image=str(picture)), settings=settings
    )
    assert report.frames == 48
    model = negative_model(tmp_path / "neg.onnx")
    run(clips["silent"], tmp_path / "b.mp4", JobSpec(model="onnx", model_file=str(model)), settings=settings)
    _, originals = decode_frames(clips["silent"])
    _, negatives = decode_frames(tmp_path / "b.mp4")
    assert psnr(255 - originals[10], negatives[10]) > 30


def test_mkv_output_and_a_refused_extension(clips, settings, tmp_path):
    run(clips["pal"], tmp_path / "out.mkv", JobSpec(style="4"), settings=settings)
    assert packets(tmp_path / "out.mkv", "audio") == packets(clips["pal"], "audio")
    with pytest.raises(OutputError, match="use one of"):
        run(clips["pal"], tmp_path / "out.avi", JobSpec(style="4"), settings=settings)


def test_a_work_dir_makes_a_second_run_reuse_every_chunk(clips, settings, tmp_path):
    work = tmp_path / "work"
    first = run(clips["pal"], tmp_path / "1.mp4", JobSpec(style="5"), settings=settings, work=work)
    second = run(clips["pal"], tmp_path / "2.mp4", JobSpec(style="5"), settings=settings, work=work)
    assert first.chunks_reused == 0
    assert second.chunks_reused == second.chunks == first.chunks
    # When its first frame went to the encoder: after the probe, before the end; none when every chunk was reused.
    assert first.seconds["probe"] < first.first_frame_s < first.seconds["total"]
    assert second.first_frame_at is None and second.first_frame_s is None
    assert decode_frames(tmp_path / "1.mp4")[1][40].tobytes() == decode_frames(tmp_path / "2.mp4")[1][40].tobytes()
    other = run(clips["pal"], tmp_path / "3.mp4", JobSpec(style="6"), settings=settings, work=work)
    assert other.chunks_reused == 0  # another style never reuses these segments


def test_a_folder_is_a_batch_and_its_rows_name_the_runtime_a_video_would_run_on(tmp_path, settings):
    from PIL import Image

    from restyle.engines.sizing import choose_layout
    from restyle.errors import InputError
    from restyle.pipeline import run_batch

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(np.full((40 + i, 60, 3), 60 * i, np.uint8)).save(photos / f"p{i}.png")
    with pytest.raises(InputError, match="run_batch"):
        run(photos, tmp_path / "styled", JobSpec(style="9"), settings=settings)
    report = run_batch(photos, tmp_path / "styled", JobSpec(style="9"), settings=settings)
    assert report.frames == 3 and Image.open(tmp_path / "styled" / "p1.png").size == (60, 41)
    choice = choose_layout(settings, 1280 * 720)[0].choose("multistyle26", ("style 9",))  # its style's precision
    assert {(r.runtime, r.precision) for r in report.rows} == {(choice.backend, choice.precision)}


def test_deflicker_steadies_the_video_across_chunks_and_keeps_its_style(motion_clips, tmp_path):
    from restyle.pipeline.reference import model_frames
    from restyle.quality import measure

    source = motion_clips["pan"]
    spec, smoothed = JobSpec(style="7"), JobSpec(style="7", deflicker=0.8)
    per_frame = run(
        source, tmp_path / "per-frame.mp4", spec, settings=Settings(workers=2, threads=1, chunk_seconds=0.5)
    )
    smooth = run(source, tmp_path / "smooth.mp4", smoothed, settings=Settings(workers=2, threads=1, chunk_seconds=0.5))
    unbroken = run(
        source, tmp_path / "unbroken.mp4", smoothed, settings=Settings(workers=1, threads=2, chunk_seconds=60)
    )
    assert smooth.chunks >= 4 and unbroken.chunks == 1 and smooth.chunk_starts == per_frame.chunk_starts
    in_pts, _ = decode_frames(source)
    assert decode_frames(tmp_path / "smooth.mp4")[0] == in_pts
    assert packets(tmp_path / "smooth.mp4", "audio") == packets(source, "audio")
    assert smooth.busy_s["smooth"] > 0 and smooth.deflicker == 0.8

    reference = list(model_frames(source, spec))
    before = measure(source, tmp_path / "per-frame.mp4", reference=iter(reference), chunk_starts=smooth.chunk_starts)
    after = measure(source, tmp_path / "smooth.mp4", reference=iter(reference), chunk_starts=smooth.chunk_starts)
    assert after.warping_error < 0.7 * before.warping_error
    assert after.ssim >= 0.85
    # No seam: steadier at the chunk starts than per-frame output, and the frames there are as close to
    # an unbroken run's as one encode is to another (measured ~35.6 dB; without the lead-in, ~29 dB).
    assert after.boundary_warping_error < before.boundary_warping_error
    _, chunked = decode_frames(tmp_path / "smooth.mp4")
    _, whole = decode_frames(tmp_path / "unbroken.mp4")
    assert min(psnr(chunked[i], whole[i]) for i in smooth.chunk_starts[1:]) > 33


def test_a_super_resolution_model_makes_a_bigger_video_with_the_same_timing_and_sound(clips, settings, tmp_path):
    from tests.handlers.test_onnx_image import upscaling_model

    output = tmp_path / "big.mp4"
    report = run(
        clips["pal"],
        output,
        JobSpec(model="onnx", model_file=str(upscaling_model(tmp_path / "x2.onnx"))),
        settings=settings,
    )
    in_pts, originals = decode_frames(clips["pal"])
    out_pts, frames = decode_frames(output)
    assert (report.width, report.height) == (640, 360) and frames[0].shape == (360, 640, 3)
    assert out_pts == in_pts and report.frames == 75
    assert packets(output, "audio") == packets(clips["pal"], "audio")
    assert psnr(originals[40], frames[40][::2, ::2]) > 30  # the same picture, twice the size
    assert any("scales the picture: 320x180 in, 640x360 out" in note for note in report.notes)


def test_a_chunk_whose_model_gets_stuck_once_runs_again_and_the_video_is_whole(clips, stuck_once_handler, tmp_path):
    """A worker's model never returns from its 6th call: past the chunk's deadline (a few seconds, from the
    measured speed) the worker is killed and the chunk runs again; every frame is there, once, in order."""
    marker = tmp_path / "stuck"
    spec = JobSpec(model=stuck_once_handler, params={"marker": str(marker), "after": 5})
    settings = Settings(workers=2, threads=1, chunk_seconds=0.5, task_stall_minimum_s=3, task_stall_floor_s=60)
    seen: list[int] = []
    report = run(clips["pal"], tmp_path / "out.mp4", spec, settings=settings, on_progress=lambda d, n: seen.append(d))
    assert marker.exists()  # a chunk did get stuck
    assert report.chunks_retried >= 1 and report.frames == 75
    in_pts, originals = decode_frames(clips["pal"])
    out_pts, negatives = decode_frames(tmp_path / "out.mp4")
    assert out_pts == in_pts
    assert min(psnr(255 - a, b) for a, b in zip(originals[::6], negatives[::6], strict=True)) > 30
    assert packets(tmp_path / "out.mp4", "audio") == packets(clips["pal"], "audio")
    assert seen[-1] == 75 and seen == sorted(seen)  # progress counts the stuck try's frames once
