"""Sessions as a worker opens them: what loading a runtime costs and what it does besides."""

import json
import os
import subprocess
import sys
from pathlib import Path

# A worker's whole life with OpenVINO: import, compile the 26-style network, run a frame. It prints what it
# loaded and the processes it started.
WORKER = """
import json, multiprocessing, sys
import numpy as np
from restyle.handlers import JobSpec, Runtime, load
from restyle.handlers.base import params_of
spec = JobSpec(style="7")
model = load(spec, Runtime("cpu", threads=1, backend="openvino", precision="f32"))
out = model.predict(np.zeros((1, 64, 96, 3), np.uint8), params_of(spec))
print(json.dumps({"shape": list(out.shape), "children": len(multiprocessing.active_children()),
                  "modules": sorted(m for m in ("openvino", "openvino_telemetry") if m in sys.modules)}))
"""


def test_an_openvino_worker_does_not_phone_home(tmp_path):
    # OpenVINO's model converter sends a Google Analytics event on import, from a process it spawns, and keeps
    # a client id in ~/intel: a fresh home shows whether anything was written there.
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["shape"] == [1, 64, 96, 3]
    assert seen["modules"] == ["openvino"]  # not openvino_telemetry
    assert seen["children"] == 0
    assert not (home / "intel").exists(), sorted(str(p) for p in home.rglob("*"))
    assert list(Path(tmp_path / "cache" / "restyle").iterdir())  # the run itself did use the fresh cache


def test_the_converter_restyle_skips_still_imports_for_whoever_asks():
    code = (
        "from restyle.runtime.sessions import import_openvino; import_openvino(); "
        "from openvino.tools.ovc import convert_model; print(callable(convert_model))"
    )
    env = {**os.environ, "CI": "true"}  # the converter's own telemetry stays off in this check
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
