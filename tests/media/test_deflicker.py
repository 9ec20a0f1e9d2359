import numpy as np
import pytest

from restyle.handlers import JobSpec, Runtime, load
from restyle.handlers.base import params_of
from restyle.media.deflicker import Deflicker, warmup_frames
from restyle.quality import measure, psnr
from tests.conftest import decode_frames


@pytest.fixture(scope="module")
def pan(motion_clips) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The pan clip's frames and the model's per-frame stylisation of each."""
    _, frames = decode_frames(motion_clips["pan"])
    model = load(JobSpec(style="19"), Runtime("cpu", threads=2))  # a style that flickers a lot
    return frames, [model.predict(f[None], params_of(JobSpec(style="19")))[0] for f in frames]


def test_deflicker_steadies_the_style_and_keeps_it(pan):
    frames, styled = pan
    smooth = Deflicker(0.8)(np.stack(frames), np.stack(styled))
    assert smooth.shape == np.stack(styled).shape and smooth.dtype == np.uint8
    assert measure(frames, smooth).warping_error < 0.7 * measure(frames, styled).warping_error
    assert np.mean([psnr(a, b) for a, b in zip(smooth, styled, strict=False)]) > 20  # still the style, not a smear


def test_strength_zero_and_the_first_frame_are_left_as_the_model_made_them(pan):
    frames, styled = pan
    assert np.array_equal(Deflicker(0.0)(np.stack(frames[:5]), np.stack(styled[:5])), np.stack(styled[:5]))
    assert np.array_equal(Deflicker(0.8).step(frames[0], styled[0]), styled[0])


def test_a_chunk_that_leads_in_continues_an_unbroken_run(pan):
    frames, styled = pan
    unbroken = Deflicker(0.8)(np.stack(frames), np.stack(styled))
    start, lead = 30, warmup_frames(0.8)
    warm = Deflicker(0.8)(np.stack(frames[start - lead : start + 1]), np.stack(styled[start - lead : start + 1]))[lead]
    cold = Deflicker(0.8)(np.stack(frames[start : start + 1]), np.stack(styled[start : start + 1]))[0]
    assert psnr(warm, unbroken[start]) > 45  # the lead-in rebuilt the state
    assert psnr(cold, unbroken[start]) < psnr(warm, unbroken[start]) - 10


def test_warmup_grows_with_strength():
    assert warmup_frames(0) == 0
    assert 1 <= warmup_frames(0.3) < warmup_frames(0.8) == 8 < warmup_frames(0.95) <= 16
    with pytest.raises(ValueError):
        Deflicker(1.5)


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (11, 13)])
def test_tiny_frames_are_smoothed_too(size):
    """A still input whose restyled frames flicker between two pictures: the output flickers less."""
    rng = np.random.default_rng(2)
    still = np.repeat(rng.integers(0, 255, size=(1, *size, 3), dtype=np.uint8), 8, axis=0)
    a, b = rng.integers(0, 255, size=(2, *size, 3), dtype=np.uint8)
    styled = np.stack([a, b] * 4)
    smooth = Deflicker(0.8)(still, styled)
    assert smooth.shape == styled.shape and smooth.dtype == np.uint8

    def flicker(video: np.ndarray) -> float:
        return float(np.mean(np.abs(np.diff(video.astype(np.int16), axis=0))))

    assert flicker(smooth) < 0.7 * flicker(styled)  # measured 0.55 (random texture is all fine band), 0.12 at 1x1
