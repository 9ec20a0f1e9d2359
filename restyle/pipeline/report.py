"""The record of one run: what it did and how long each step took."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

from restyle.runtime import Choice


@dataclass
class RunReport:
    """What a run did, with its figures; printed by the CLI, stored by the service."""

    input: str
    output: str
    model: str
    frames: int
    chunks: int
    chunks_reused: int
    chunks_retried: int  # given out again after their worker was lost (Ray) or stuck; stored chunks never are
    width: int | None  # of the output's pictures; None for a folder of images (each has its own)
    height: int | None
    duration_s: float | None  # None for a folder of images
    workers: int
    threads: int
    backend: str  # the runtime that ran the model, e.g. "openvino" or "onnxruntime"
    precision: str = "f32"  # f32 | bf16 | int8 | check (bf16 if the first frame passed the fidelity bar, else f32)
    precision_reason: str = ""  # why that runtime and precision (restyle/runtime/base.py, choose)
    # Per machine that ran chunks (Ray: the node's address; "local" for this one): chunks, frames, the runtime
    # and precision its own CPU chose (nodes differ), and the bytes it fetched for them (shipped files).
    nodes: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # wall seconds per step
    busy_s: dict[str, float] = field(default_factory=dict)  # CPU seconds per stage, summed over chunks and workers
    notes: list[str] = field(default_factory=list)
    deflicker: float = 0.0  # its strength; 0: every frame restyled on its own
    chunk_starts: list[int] = field(default_factory=list)  # the first frame of each chunk, to look at the joins
    models_loaded: int = 0  # by the engine's workers for this run; 0 when they kept the model from an earlier job
    records: dict | None = None  # records models: frames, frames with detections, detections per class
    # The output read back and checked against the input: frames, duration, audio start offsets ([input, output]).
    output_check: dict = field(default_factory=dict)
    # When (time.time()) the first frame went to the encoder, in whichever worker was first, and how long after
    # the run began (a benchmark subtracts its own start from the first); None: no chunk ran (all reused).
    first_frame_at: float | None = None
    first_frame_s: float | None = None

    @property
    def fps(self) -> float:
        total = self.seconds.get("total", 0.0)
        return self.frames / total if total else 0.0

    def to_dict(self) -> dict:
        return asdict(self) | {"fps": round(self.fps, 3)}

    def summary(self) -> str:
        steps = " ".join(f"{name} {sec:.1f}s" for name, sec in self.seconds.items() if name != "total")
        reused = f" ({self.chunks_reused} reused)" if self.chunks_reused else ""
        smooth = f" deflicker {self.deflicker}" if self.deflicker else ""
        if self.records is not None and self.records.get("top_labels"):  # a classifier
            smooth += "; top label per frame: " + ", ".join(f"{k} {n}" for k, n in self.records["top_labels"].items())
        elif self.records is not None:
            counts = ", ".join(f"{name} {n}" for name, n in self.records["detections"].items()) or "none"
            smooth += f"; {self.records['frames_with_detections']} frames with detections ({counts})"
        if set(self.nodes) - {"local"}:  # a cluster: where the chunks ran, on what each node's CPU chose
            smooth += "; " + ", ".join(
                f"{node} {n['chunks']} chunks {n['runtime']}" for node, n in sorted(self.nodes.items())
            )
        return (
            f"{self.output}: {self.frames} frames in {self.chunks} chunks{reused}, "
            f"{self.seconds.get('total', 0):.1f}s, {self.fps:.2f} fps [{steps}] "
            f"{self.workers}x{self.threads} {self.backend} {self.precision} {self.model}{smooth}"
        )


class WorkerFacts(Protocol):
    """What an engine's worker stamps on each result (``ran_on``): where it ran, on what, and what it fetched."""

    frames: int
    node: str
    runtime: str
    bytes_in: int


def runtime_figures(results: Sequence[WorkerFacts], estimate: Choice) -> dict:
    """The report's backend, precision, its reason and per-node figures, as the workers chose on their own CPUs.

    ``estimate`` is the driver's choice for this machine: the report's when no chunk ran (all reused), and its
    reason where the workers chose the same.
    """
    nodes: dict[str, dict] = {}
    for result in results:
        node = nodes.setdefault(result.node or "local", {"chunks": 0, "frames": 0, "runtime": Counter(), "bytes_in": 0})
        node["chunks"] += 1
        node["frames"] += result.frames
        node["runtime"][result.runtime or estimate.runtime] += 1
        node["bytes_in"] += result.bytes_in
    ran = Counter(result.runtime or estimate.runtime for result in results)
    runtime = ran.most_common(1)[0][0] if ran else estimate.runtime
    backend, _, precision = runtime.partition(" ")
    reason = (
        estimate.reason
        if runtime == estimate.runtime
        else f"as the workers chose on their CPUs ({', '.join(sorted(ran))})"
    )
    for node in nodes.values():  # one runtime per node, unless its workers differed (a mixed node): then all
        node["runtime"] = ", ".join(sorted(node["runtime"]))
    return {"backend": backend, "precision": precision, "precision_reason": reason, "nodes": nodes}
