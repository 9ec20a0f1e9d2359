"""One job (probe -> plan -> score chunks on an engine -> deliver), and a batch: many inputs, one manifest."""

from restyle.errors import Cancelled
from restyle.pipeline.batch import run_batch
from restyle.pipeline.chunk import ChunkResult
from restyle.pipeline.outcomes import BatchReport
from restyle.pipeline.report import RunReport
from restyle.pipeline.run import Hooks, plan, run

__all__ = ["BatchReport", "Cancelled", "ChunkResult", "Hooks", "RunReport", "plan", "run", "run_batch"]
