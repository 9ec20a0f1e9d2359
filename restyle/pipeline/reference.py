"""The reference a restyled video is measured against: the model run on each frame alone."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from restyle.handlers import check, load_model
from restyle.jobspec import JobSpec
from restyle.pipeline.chunk import with_strength
from restyle.quality.measure import frames_of
from restyle.runtime import Runtime


def model_frames(input: str | Path, spec: JobSpec) -> Iterator[np.ndarray]:
    """The per-frame stylisation of ``input``: the model run on each frame alone, nothing smoothed, nothing encoded."""
    handler = check(spec)
    model = load_model(handler.load_spec(spec), Runtime("auto", threads=os.cpu_count() or 1))
    params = handler.params(spec)
    for frame in frames_of(input):
        yield with_strength(frame[None], model.predict(frame[None], params), spec.strength)[0]
