"""The ETA the API gives: frames left / the speed seen over the last seconds."""

from __future__ import annotations

from types import SimpleNamespace

from restyle.service.eta import Speedometer


def job(done: int, state: str = "running") -> SimpleNamespace:
    return SimpleNamespace(id="j1", state=state, frames_done=done, frames_total=1000)


def test_eta_is_frames_left_over_recent_speed(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("restyle.service.eta.time.monotonic", lambda: clock[0])
    speeds = Speedometer()
    assert speeds.eta(job(0)) is None  # no speed seen yet
    clock[0] += 10
    assert speeds.eta(job(100)) == 90.0  # 10 frames/s, 900 left
    clock[0] += 10
    assert speeds.eta(job(300)) == 46.7  # 15 frames/s over the window, 700 left
    clock[0] += 5
    assert speeds.eta(job(50)) is None  # a retry started over: no speed until it moves again
    assert speeds.eta(job(50, state="succeeded")) is None
