"""The fast colour conversions around the model agree with swscale's, and step aside where they would not."""
import av
import numpy as np

from restyle.media.decode import to_rgb
from restyle.media.encode import rgb_to_yuv420p


def _frames(tmp_path, pix_fmt="yuv420p", size=(96, 64)):
    from restyle.media.sample import make_clip

    clip = make_clip(tmp_path / f"{pix_fmt}{size[0]}.mp4", width=size[0], height=size[1], seconds=0.2, audio=False, pix_fmt=pix_fmt)
    with av.open(str(clip)) as container:
        return list(container.decode(video=0))


def test_decoded_rgb_matches_swscale_within_chroma_interpolation(tmp_path):
    for frame in _frames(tmp_path)[:3]:
        ours, theirs = to_rgb(frame).astype(int), frame.to_ndarray(format="rgb24").astype(int)
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).mean() < 2.0


def test_other_formats_and_odd_sizes_take_swscale_exactly(tmp_path):
    for frame in _frames(tmp_path, "yuv444p")[:1] + _frames(tmp_path, "yuv444p", (95, 63))[:1]:
        assert np.array_equal(to_rgb(frame), frame.to_ndarray(format="rgb24"))


def test_yuv420p_for_the_encoder_matches_swscale_luma_and_averages_chroma():
    rgb = np.random.default_rng(4).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    ours = rgb_to_yuv420p(rgb)
    theirs = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
    assert ours.shape == theirs.shape == (96, 96)
    assert np.abs(ours[:64].astype(int) - theirs[:64]).max() <= 1
    block = np.zeros((4, 4, 3), np.uint8)
    block[0, 0], block[0, 1] = (255, 0, 0), (0, 0, 255)  # red and blue in one 2x2 block: chroma is their mean with black
    u = rgb_to_yuv420p(block)[4:].reshape(2, -1)[0][0]
    assert abs(int(u) - 147) <= 1  # (U(red) 90 + U(blue) 240 + 2 x 128) / 4
