import numpy as np
import pytest
from PIL import Image

from restyle.media.flow import FlowEstimator, gray, reliable, resize_flow, warp
from restyle.media.sample import packaged_photo


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    return np.asarray(Image.open(packaged_photo()).convert("RGB").resize((320, 376)))[:180]


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_flow_finds_a_known_shift_and_warping_undoes_it(picture, method):
    shifted = np.roll(picture, 3, axis=1)  # everything moved 3 pixels to the right
    back = FlowEstimator(method)(gray(shifted), gray(picture))  # where each pixel of `shifted` was before
    middle = back[40:-40, 40:-40]
    assert np.median(middle[..., 0]) == pytest.approx(-3, abs=0.25)
    assert np.median(middle[..., 1]) == pytest.approx(0, abs=0.25)
    restored = warp(picture, back)
    before = np.abs(shifted.astype(int) - picture).mean()
    after = np.abs(shifted[40:-40, 40:-40].astype(int) - restored[40:-40, 40:-40]).mean()
    assert after < before / 4


def test_pixels_that_leave_the_frame_are_not_reliable(picture):
    flow = FlowEstimator("dis")
    shifted = np.roll(picture, 8, axis=1)
    back, forth = flow(gray(shifted), gray(picture)), flow(gray(picture), gray(shifted))
    mask = reliable(back, forth)
    assert not mask[:, :6].any()  # they came from outside the previous frame
    assert mask[30:-30, 30:-30].mean() > 0.9


def test_a_half_size_flow_scales_up_with_its_vectors():
    small = np.full((90, 160, 2), 1.5, np.float32)
    big = resize_flow(small, 320, 180)
    assert big.shape == (180, 320, 2)
    assert np.allclose(big, 3.0)
