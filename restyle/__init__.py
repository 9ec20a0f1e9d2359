"""restyle: batch scoring of deep learning models over media.

The flagship job restyles every frame of a video with a neural network and gives
the video back with its sound, frame rate and length intact::

    from restyle import run, ModelSpec
    report = run("clip.mp4", "styled.mp4", ModelSpec.styles("7"))
"""
from restyle.errors import RestyleError
from restyle.handlers.base import ModelSpec
from restyle.pipeline import run
from restyle.report import RunReport

__version__ = "0.1.0"
__all__ = ["ModelSpec", "RestyleError", "RunReport", "run", "__version__"]
