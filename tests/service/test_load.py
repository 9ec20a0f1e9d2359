"""A short load test on 127.0.0.1 (bounded in count and time): concurrent submissions and steady polling,
with 2 workers. No errors, no job lost, no job made twice. bench/load.py runs the full-size one."""

import importlib.util
import secrets
import sys
from pathlib import Path

import pytest

from restyle.media.sample import make_clip

pytestmark = pytest.mark.slow


def _load_module():
    spec = importlib.util.spec_from_file_location("bench_load", Path(__file__).parents[2] / "bench" / "load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_concurrent_submissions_and_polling_lose_nothing(start_service, tmp_path):
    load = _load_module()
    tokens = [secrets.token_hex(16) for _ in range(5)]
    admin = secrets.token_hex(16)
    env = {
        "RESTYLE_TOKENS": ",".join([f"user{i}:submitter:{t}" for i, t in enumerate(tokens)] + [f"ops:admin:{admin}"]),
        "TEST_ADMIN_TOKEN": admin,
    }
    service = start_service(env, local_workers=2)
    clip = make_clip(tmp_path / "clip.mp4", width=128, height=72, rate=25, seconds=1.0)
    figures = load.run_load(service.url, tokens, admin, clip, submissions=20, seconds=10, poll_rate=20)
    assert figures.requests >= 100  # half the 200 asked for: the load did happen, even on a loaded 2-core CI
    assert figures.errors == 0, figures.error_kinds
    assert figures.jobs_recorded == 20 and figures.jobs_succeeded == 20
    assert figures.jobs_lost == 0 and figures.duplicate_jobs == 0
    assert figures.latency_ms["p99"] < 2000
