"""Real servers for the tests, on 127.0.0.1: SeaweedFS (S3) and PostgreSQL, started and stopped here.

When a server's program is missing the tests that need it are skipped with the reason,
unless RESTYLE_REQUIRE_SERVERS=1 (set by .ci/run), where that is a failure: CI never
passes by skipping.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

S3_KEY, S3_SECRET = "restyle", "restyle-test-secret"


def missing(what: str) -> None:
    message = f"{what} (run .ci/run, or install it, to test against the real server)"
    if os.environ.get("RESTYLE_REQUIRE_SERVERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()[-2000:] if log else ''}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(
        f"nothing listens on 127.0.0.1:{port} after {timeout} s: {log.read_text()[-2000:] if log else ''}"
    )


def stop_group(process: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a server started with ``start_new_session=True`` and everything it started (its process group):
    SIGTERM, then SIGKILL if it has not ended within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class SeaweedFS:
    """A `weed mini` server: master, volume, filer and S3 in one process."""

    root: Path
    s3_port: int
    filer_port: int
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self, buckets: list[str], webhook: str | None = None, webhook_token: str = "") -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "s3.json").write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "restyle",
                            "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        config = self.root / "config"
        config.mkdir(exist_ok=True)
        if webhook:
            (config / "notification.toml").write_text(
                f'[notification.webhook]\nenabled = true\nendpoint = "{webhook}"\nbearer_token = "{webhook_token}"\n'
                'event_types = ["create"]\n'
            )
        ports = {name: free_port() for name in ("master", "volume", "admin", "webdav", "iceberg")}
        command = [
            shutil.which("weed"),
            f"-logdir={self.root / 'logs'}",
            "mini",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={self.root / 's3.json'}",
            f"-s3.port={self.s3_port}",
            f"-filer.port={self.filer_port}",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-admin.port={ports['admin']}",
            f"-webdav.port={ports['webdav']}",
            f"-s3.port.iceberg={ports['iceberg']}",
            "-admin.ui=false",
            f"-bucket={','.join(buckets)}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            f"-s3.localSocket={self.root / 's3.sock'}",
        ]
        (self.root / "logs").mkdir(exist_ok=True)
        (self.root / "data").mkdir(exist_ok=True)
        log = self.root / "weed.log"
        # notification.toml is read from the working directory.
        self.process = subprocess.Popen(
            command, cwd=config, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_for_port(self.s3_port, 60, self.process, log)
        self._wait_for_buckets(buckets)

    def _wait_for_buckets(self, buckets: list[str]) -> None:
        from botocore.session import get_session

        client = get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
                for bucket in buckets:
                    if bucket not in names:
                        client.create_bucket(Bucket=bucket)
                client.put_object(Bucket=buckets[0], Key=".ready", Body=b"1")
                client.delete_object(Bucket=buckets[0], Key=".ready")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def outage(self, seconds: float, buckets: list[str]) -> None:
        """Go away (killed) for ``seconds``, then come back on the same ports with the same data."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        time.sleep(seconds)
        self.start(buckets)

    def stop(self) -> None:
        if self.process:
            stop_group(self.process, 15)


@dataclass
class PostgreSQL:
    """A throwaway cluster: initdb + pg_ctl in a temp folder, run as the postgres user when we are root."""

    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(prefix + list(command), check=True, capture_output=True, text=True)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        data = self.root / "data"
        self._run(_pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        self._serve()

    def outage(self, seconds: float) -> None:
        """Stop at once (no shutdown checkpoint, clients cut off) for ``seconds``, then start again."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        time.sleep(seconds)
        self._serve()

    def _serve(self) -> None:
        data = self.root / "data"
        self._run(
            _pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(self.root / "pg.log"),
            "-o",
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def stop(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if not found:
        missing(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return str(found)


def have_postgres() -> bool:
    return bool(shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb")))


@dataclass
class RayCluster:
    """`ray start` twice: a head and a second node, each with one CPU, on loopback addresses of their own."""

    root: Path
    port: int = 0

    driver_ip = "127.0.0.2"  # drivers join the head's node, so losing the other node never takes them down

    @property
    def address(self) -> str:
        return f"127.0.0.2:{self.port}"

    def start(self) -> None:
        from testing.ray_clusters import cluster_env, own_ports

        self.port = free_port()
        # Ray turns token auth on when ~/.ray/auth_token exists, which anyone on the machine may make or
        # remake: this cluster, this process's drivers and the services they start run without tokens.
        os.environ["RAY_AUTH_MODE"] = "disabled"
        ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))  # the venv's, if not on PATH
        common = ["--num-cpus", "1", "--disable-usage-stats"]
        # Ray notices a lost node after ~5 s, not its default ~30 s, and a node busy for a few seconds on a
        # loaded 2-core CI is not taken for lost (at 3 x 0.5 s, as the fake clusters use, it could be).
        health = {"health_check_period_ms": 1000, "health_check_timeout_ms": 1000, "health_check_failure_threshold": 5}
        subprocess.run(
            [
                ray,
                "start",
                "--head",
                "--node-ip-address",
                "127.0.0.2",
                "--port",
                str(self.port),
                "--temp-dir",
                str(self.root),
                "--include-dashboard",
                "false",
                *own_ports(head=True),
                "--system-config",
                json.dumps(health),
                *common,
            ],
            env=cluster_env(self.root),
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        subprocess.run(
            [
                ray,
                "start",
                "--address",
                self.address,
                "--node-ip-address",
                "127.0.0.3",
                *own_ports(head=False),
                *common,
            ],
            env=cluster_env(self.root),
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def stop(self) -> None:
        from testing.ray_clusters import stop_ray_processes

        stop_ray_processes(self.root)  # never `ray stop --force`: other people's clusters may run here
        shutil.rmtree(self.root, ignore_errors=True)
        os.environ.pop("RAY_AUTH_MODE", None)
