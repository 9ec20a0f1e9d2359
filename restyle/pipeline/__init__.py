"""One job: probe -> plan -> score chunks on an engine -> deliver (a video, records, or a folder of images)."""

from restyle.errors import Cancelled
from restyle.pipeline.chunk import ChunkResult
from restyle.pipeline.report import RunReport
from restyle.pipeline.run import Hooks, plan, run

__all__ = ["Cancelled", "ChunkResult", "Hooks", "RunReport", "plan", "run"]
