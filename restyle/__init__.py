"""restyle: batch scoring of deep learning models over media.

The flagship job restyles every frame of a video with a neural network and gives
the video back with its sound, frame rate and length intact::

    from restyle import run, JobSpec
    report = run("clip.mp4", "styled.mp4", JobSpec(style="7"))
    report = run("clip.mp4", "faces.jsonl", JobSpec(model="yolo", model_file="det.onnx"))
    batch = run_batch("photos/", "styled/", JobSpec(style="7"))  # a folder of videos and images; manifest.jsonl

``import restyle`` is cheap: the pipeline (PyAV, onnxruntime) loads on first use.
"""

from typing import Any

from restyle.errors import RestyleError
from restyle.jobspec import JobSpec, OutputOptions

__version__ = "0.1.0"
__all__ = ["JobSpec", "OutputOptions", "RestyleError", "RunReport", "run", "run_batch", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("run", "run_batch"):
        import restyle.pipeline

        return getattr(restyle.pipeline, name)
    if name == "RunReport":
        from restyle.pipeline import RunReport

        return RunReport
    raise AttributeError(f"module 'restyle' has no attribute {name!r}")
