"""`restyle serve`: the API and dashboard, the inbox trigger, and local worker processes, together."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import uvicorn

from restyle.client.local import local_url, remove_server_file, write_server_file
from restyle.config import Settings
from restyle.service import keys, scaler
from restyle.service.context import Context
from restyle.service.http.app import create_app
from restyle.service.worker import Worker

log = logging.getLogger("restyle")


def serve(settings: Settings) -> None:
    """Serve until interrupted; worker processes that die are started again."""
    context = Context(settings)
    context.jobs  # noqa: B018 - touched to fail now, with a reason, if the job store is unreachable
    if context.data.is_local:  # so that `cp clip.mp4 <data>/inbox/` works from the start
        Path(context.data.root, keys.INBOX).mkdir(parents=True, exist_ok=True)
    context.data.list(keys.INBOX)
    context.tokens  # noqa: B018 - touched to make the admin token on first start, so there is one to sign in with
    tokens = "configured tokens" if settings.tokens else f"the admin token in {settings.home / 'admin.token'}"
    print(
        f"restyle: serving http://{settings.host}:{settings.port} (dashboard /, API /docs, metrics /metrics) "
        f"with {settings.local_workers} worker(s); sign in with {tokens}",
        file=sys.stderr,
    )
    print(
        f"restyle: data store {settings.data}, system store {settings.system}, job store {settings.database}",
        file=sys.stderr,
    )
    stop = threading.Event()
    if scaler.start(context.jobs, settings, stop):  # RESTYLE_ENGINE=ray: nodes for queued jobs, none for an empty queue
        print(
            f"restyle: scaling the Ray cluster on the job queue: {settings.ray_actors_per_job} actor(s) a job, "
            f"at most {settings.ray_max_requested_actors}",
            file=sys.stderr,
        )
    supervisor = threading.Thread(target=_supervise, args=(settings.local_workers, stop), daemon=True)
    supervisor.start()
    # So that `restyle submit`/`jobs` on this home find this service whatever its port (restyle/client/local.py).
    write_server_file(settings.home, local_url(settings.host, settings.port))
    signal.signal(signal.SIGTERM, lambda signum, _: _forget_and_die(settings, signum))
    try:
        uvicorn.run(create_app(settings, run_trigger=True), host=settings.host, port=settings.port, log_level="warning")
    finally:
        remove_server_file(settings.home)
        stop.set()
        supervisor.join(timeout=20)  # it waits up to 10 s for its workers, then kills them


def _forget_and_die(settings: Settings, signum: int) -> None:
    """SIGTERM, once uvicorn has shut down (it raises the signal again after its own handler): remove the URL
    clients would find, then end as SIGTERM ends a process."""
    remove_server_file(settings.home)
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def work(settings: Settings, parent: int | None = None) -> None:
    """`restyle worker`: take and run jobs until SIGTERM or Ctrl-C (or, started by `restyle serve`, until it ends)."""
    if parent is not None:
        from restyle.engines.local import die_with_parent

        die_with_parent(parent)  # a worker blocked waiting out a store outage must not outlive its service
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    context = Context(settings)
    if parent is None:  # a worker on its own scales the cluster itself; under restyle serve, serve does
        scaler.start(context.jobs, settings, stop)
    Worker(context).run(stop)


def _supervise(count: int, stop: threading.Event) -> None:
    processes: list[subprocess.Popen] = []
    try:
        while not stop.is_set():
            processes = [p for p in processes if p.poll() is None]
            while len(processes) < count:
                processes.append(
                    subprocess.Popen([sys.executable, "-m", "restyle.cli", "worker", "--parent", str(os.getpid())])
                )
            stop.wait(1.0)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
