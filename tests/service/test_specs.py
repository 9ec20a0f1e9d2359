"""The doors' spec check (restyle.service.specs) against what was kept when a model or picture was added."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from restyle.config import Settings
from restyle.service.catalogue import Catalogue
from restyle.service.context import Context

ALICE, ROOT = "alice-token-0123456789", "root-token-0123456789ab"


def large_model(path: Path, megabytes: int = 160) -> Path:
    """A valid image->image ONNX model (an identity 1x1 convolution) that carries ``megabytes`` of weights."""
    weight = numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), "weight")
    ballast = numpy_helper.from_array(np.ones(megabytes * 1024**2 // 4, np.float32), "ballast")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "weight"], ["styled"])],
        "large",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("styled", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [weight, ballast],
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


def _rss_mb(pid: int, field: str) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith(f"{field}:")).split()[1]) / 1024


def test_a_burst_of_submissions_naming_a_large_model_does_not_load_it(start_service, tmp_path):
    """Failed on 4b5e38b: every door loaded and checked the whole registered file (onnx.load + check_model), so 20
    submissions at once naming a 160 MB model took the API process up by GBs. Now a door checks a job against the
    model's graph kept at registration (weights left out), and the API's peak RSS stays put."""
    home = tmp_path / "home"
    tokens = f"alice:submitter:{ALICE},root:admin:{ROOT}"
    model = large_model(tmp_path / "large.onnx")
    context = Context(Settings(home=home, tokens=tokens))
    with model.open("rb") as file:  # registered from this process: the API's peak is the doors' alone
        Catalogue(context).register("large", file, kind="onnx", added_by="root")
    env = {
        "RESTYLE_TOKENS": tokens,
        "TEST_ADMIN_TOKEN": ROOT,
        "RESTYLE_LOCAL_WORKERS": "0",
        "RESTYLE_SUBMIT_BURST": "50",
    }
    service = start_service(env, home=home)
    headers = {"Authorization": f"Bearer {ALICE}"}
    ok = service.http.post("/api/uploads", json={"filename": "a.mp4", "model": "large"}, headers=headers)
    assert ok.status_code == 201, ok.text  # the first: any one-off cost is paid here
    before = _rss_mb(service.process.pid, "VmHWM")

    def submit(n: int) -> int:
        body = {"filename": f"{n}.mp4", "model": "large", "params": {"value_range": 255}}
        return service.http.post("/api/uploads", json=body, headers=headers, timeout=120).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(submit, range(20)))
    grown = _rss_mb(service.process.pid, "VmHWM") - before
    print(f"API peak RSS {before:.0f} MB, +{grown:.0f} MB after 20 submissions")
    assert codes == [201] * 20, codes
    assert grown < 300, f"the API's peak RSS grew by {grown:.0f} MB for 20 submissions"
    refused = service.http.post(
        "/api/uploads", json={"filename": "x.mp4", "model": "large", "params": {"value_range": -1}}, headers=headers
    )
    assert refused.status_code == 422 and "value_range must be a number above 0" in refused.json()["detail"]


def test_a_door_checks_against_the_kept_graph_and_makes_it_once_for_an_older_model(tmp_path, monkeypatch):
    """Doors read the graph kept at registration, never the file; a model registered before graphs were kept gets
    its graph at its first door (one read of its file, then kept). A wrong parameter is still refused at the door,
    with the handler's reason."""
    from sqlalchemy import delete

    from restyle.errors import Invalid
    from restyle.service import facts
    from restyle.service.specs import door_params
    from restyle.stores.tables import ModelGraphRow
    from testing.models import negative_model

    context = Context(Settings(home=tmp_path / "home", tokens=f"alice:submitter:{ALICE},root:admin:{ROOT}"))
    books = Catalogue(context)
    with negative_model(tmp_path / "neg.onnx").open("rb") as file:
        model = books.register("neg", file, kind="onnx", added_by="root")
    assert onnx.load_from_string(books.store.graph(model.sha256)).graph.output[0].name == "y"
    reads = []
    real = facts.weightless
    monkeypatch.setattr(facts, "weightless", lambda path: reads.append(path) or real(path))
    assert door_params(context, books, "alice", {"model": "neg"}).spec.model_file == model.key
    assert reads == []  # kept at registration: the door read no file
    with pytest.raises(Invalid, match="value_range must be a number above 0"):
        door_params(context, books, "alice", {"model": "neg", "params": {"value_range": 0}})

    with context.jobs.engine.begin() as connection:  # as a job store from before this version has it
        connection.execute(delete(ModelGraphRow))
    for cached in (context.settings.home / "cache" / "graphs").glob("*.onnx"):
        cached.unlink()
    for _ in range(3):
        door_params(context, books, "alice", {"model": "neg"})
    assert len(reads) == 1 and books.store.graph(model.sha256)
