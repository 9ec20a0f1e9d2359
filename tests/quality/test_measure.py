import numpy as np
import pytest

from restyle.errors import InputError
from restyle.quality import measure, ssim
from tests.conftest import decode_frames


def _write(path, frames, rate=25):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"crf": "16", "preset": "veryfast"}
        for frame in frames:
            container.mux(stream.encode(__import__("av").VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def test_a_flickering_copy_scores_worse_than_a_steady_one(motion_clips, tmp_path):
    source = motion_clips["pan"]
    _, frames = decode_frames(source)
    rng = np.random.default_rng(0)
    flicker = [np.clip(f.astype(int) + rng.integers(-40, 40, size=(1, 1, 3)), 0, 255).astype(np.uint8) for f in frames]
    steady = measure(source, source, reference=source)
    flickering = measure(
        source, _write(tmp_path / "flicker.mp4", flicker), reference=iter(frames), chunk_starts=[0, 10, 20]
    )
    assert steady.frames == flickering.frames == len(frames)
    assert steady.warping_error == pytest.approx(steady.input_warping_error)
    assert flickering.warping_error > 5 * steady.warping_error
    assert steady.ssim == pytest.approx(1.0) and steady.psnr == float("inf")
    assert flickering.ssim < 0.99 and flickering.psnr < 30
    assert flickering.boundary_warping_error is not None and flickering.interior_warping_error is not None
    assert len(flickering.per_frame) == len(frames) - 1


def test_ssim_is_one_for_the_same_picture_and_falls_with_noise():
    rng = np.random.default_rng(1)
    ramp = np.linspace(40, 200, 64)
    picture = np.stack([np.add.outer(ramp, ramp) / 2] * 3, axis=2).astype(np.uint8)  # smooth: noise shows
    noisy = np.clip(picture.astype(int) + rng.integers(-30, 30, size=picture.shape), 0, 255).astype(np.uint8)
    assert ssim(picture, picture) == pytest.approx(1.0)
    assert ssim(picture, noisy) < 0.5
    assert (
        ssim(picture, np.clip(picture.astype(int) + 20, 0, 255).astype(np.uint8)) > 0.9
    )  # brightness alone costs little


def test_videos_of_different_lengths_are_refused(clips, motion_clips):
    with pytest.raises(InputError, match="more frames"):
        measure(motion_clips["pan"], clips["pal"])
