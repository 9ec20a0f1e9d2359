"""Measuring an output (``restyle quality``): not on a job's path. :mod:`.metrics` is a leaf the runtime uses too."""

from restyle.quality.measure import QualityReport, frames_of, measure
from restyle.quality.metrics import luma, psnr, ssim, warping_error

__all__ = ["QualityReport", "frames_of", "luma", "measure", "psnr", "ssim", "warping_error"]
