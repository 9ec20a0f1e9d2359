"""Ray clusters that a test (or a bench) starts on this machine and stops by its own processes' ids.

``LocalRayCluster(root, autoscaling=True)`` is deploy/ray-cluster.yaml's node types on Ray's
``fake_multinode`` provider: a head with 0 CPUs and worker types that start at zero nodes;
the real autoscaler starts a raylet here for each node it launches and stops it when idle.
``autoscaling=False`` is a fixed cluster: a head with ``head_cpus`` CPUs and nothing else.

Each cluster has a private temp dir and free ports, so that clusters of other people on
the machine are never touched: it is stopped by the ids of the processes whose command
line names its temp dir, never with ``ray stop --force`` (which stops every Ray process).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from testing.servers import free_port

REPO = Path(__file__).parent.parent


def fake_config(**kwargs) -> dict:
    """deploy/fake_cluster.py's fake_config (deploy/ is not a package: what is shipped is what is run)."""
    spec = importlib.util.spec_from_file_location("restyle_deploy_fake_cluster", REPO / "deploy" / "fake_cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fake_config(**kwargs)


CLUSTER_MARK = "RESTYLE_TEST_RAY_CLUSTER"  # in the environment of every process a test cluster starts


def cluster_env(root: Path, **more: str) -> dict[str, str]:
    """The environment for ``ray start`` of the cluster in ``root``: marked, so that every process under it
    (agents and the client server, whose command lines do not name ``root``, included) is stopped with it."""
    return dict(os.environ, **{CLUSTER_MARK: str(root)}, **more)


def own_ports(head: bool) -> list[str]:
    """``ray start`` options giving a node ports of its own: Ray's defaults (the client server's 10001 on a head,
    the dashboard agent's 52365, also bound on 127.0.0.1) clash with another cluster on this machine."""
    ports = ["--dashboard-agent-listen-port", str(free_port())]
    return ["--ray-client-server-port", str(free_port()), *ports] if head else ports


def processes_under(root: Path) -> list[int]:
    """Ids of the processes whose command line names ``root`` (a cluster's temp dir), or whose environment
    has the cluster's mark (:func:`cluster_env`)."""
    mark, env_mark, found = str(root).encode(), f"{CLUSTER_MARK}={root}\0".encode(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                named = mark in Path(f"/proc/{entry}/cmdline").read_bytes()
                if named or env_mark in Path(f"/proc/{entry}/environ").read_bytes() + b"\0":
                    found.append(int(entry))
            except OSError:
                pass
    return found


def stop_ray_processes(root: Path, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, the processes of the cluster living in ``root``; nobody else's.

    With their children: a raylet's agents retitle themselves over their command line and environment,
    so they are found only as its children (after it died they would be left running)."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        found = processes_under(root)
        for pid in {*found, *(child for parent in found for child in descendants(parent))}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + grace_s
        while processes_under(root) and time.monotonic() < deadline:
            time.sleep(0.2)


@dataclass
class LocalRayCluster:
    root: Path
    autoscaling: bool = True
    head_cpus: int = 0
    idle_minutes: float = 0.1  # 6 s: short, for tests; the shipped config says 5 minutes
    max_per_type: int = 2
    # Ray's health checks of nodes (ms): the defaults notice a lost node after ~15 s; tests want ~2 s.
    health_check_period_ms: int = 500
    health_check_failure_threshold: int = 3
    port: int = 0
    config: dict = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        # Ray turns token auth on by itself when ~/.ray/auth_token exists, which anyone on the machine
        # may make or remake: this cluster and this process's drivers are private to it, without tokens.
        self._auth_mode = os.environ.get("RAY_AUTH_MODE")
        os.environ["RAY_AUTH_MODE"] = "disabled"
        env = cluster_env(self.root, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1")
        ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
        command = [
            ray,
            "start",
            "--head",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--num-cpus",
            str(self.head_cpus),
            "--temp-dir",
            str(self.root),
            "--include-dashboard",
            "false",
            "--dashboard-port",
            str(free_port()),
            "--ray-client-server-port",
            str(free_port()),
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--disable-usage-stats",
            "--system-config",
            json.dumps(
                {
                    "health_check_period_ms": self.health_check_period_ms,
                    "health_check_timeout_ms": self.health_check_period_ms,
                    "health_check_failure_threshold": self.health_check_failure_threshold,
                }
            ),
        ]
        if self.autoscaling:
            self.config = fake_config(
                gcs_address=self.address, idle_minutes=self.idle_minutes, max_per_type=self.max_per_type
            )
            path = self.root / "autoscaling.yaml"
            path.write_text(yaml.safe_dump(self.config))
            command.append(f"--autoscaling-config={path}")
        subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=180)

    def stop(self) -> None:
        stop_ray_processes(self.root)
        shutil.rmtree(self.root, ignore_errors=True)
        if getattr(self, "_auth_mode", None) is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = self._auth_mode


def worker_nodes() -> list[dict]:
    """The live nodes other than the head (the driver must be connected)."""
    import ray

    return [n for n in ray.nodes() if n["Alive"] and "node:__internal_head__" not in n["Resources"]]


def raylet_pid(node: dict) -> int:
    """The raylet process of ``node`` (one of ray.nodes()): killing it is losing the node."""
    wanted = f"--raylet_socket_name={node['RayletSocketName']}"
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                args = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if args and args[0].endswith("/raylet") and wanted in args:
                return int(entry)
    raise LookupError(f"no raylet for node {node['NodeID']}")


def descendants(pid: int) -> list[int]:
    """``pid``'s children, their children, and so on."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def lose_node(node: dict) -> list[int]:
    """Pre-empt ``node`` as a cloud would: its raylet and every process under it (actors included), SIGKILL."""
    raylet = raylet_pid(node)
    victims = [raylet, *descendants(raylet)]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return victims


def wait_until(predicate, timeout: float, every: float = 0.5, what: str = "a condition") -> float:
    """Seconds it took for ``predicate()`` to hold; AssertionError after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} did not happen in {timeout:.0f} s")
        time.sleep(every)
    return time.monotonic() - started


@dataclass
class SharedNothingCluster:
    """A head with 0 CPUs on 127.0.0.2 (drivers join it) and worker nodes that see none of the driver's files.

    Each worker node (127.0.0.3, 127.0.0.4, ...) runs in a mount namespace of its own
    (``unshare --mount --propagation private``) with an empty tmpfs over every folder in
    ``hidden``: the driver's inputs, work dirs, RESTYLE_HOME and temp files live there, so a
    node reads them only if restyle sends their bytes, as on a second machine. The node's
    file cache (RESTYLE_NODE_CACHE) is in a hidden folder too: each node's is its own, and
    empty when it starts. Stopped by its processes' ids, like LocalRayCluster.
    """

    root: Path  # the cluster's temp dir (Ray's sockets and logs; never hidden)
    hidden: list[Path]  # folders the worker nodes must not see
    node_cache: Path  # inside a hidden folder
    nodes: int = 2
    cpus_per_node: int = 1
    port: int = 0

    driver_ip = "127.0.0.2"

    @property
    def address(self) -> str:
        return f"127.0.0.2:{self.port}"

    @property
    def node_ips(self) -> list[str]:
        return [f"127.0.0.{3 + i}" for i in range(self.nodes)]

    def start(self) -> None:
        if not shutil.which("unshare"):
            raise RuntimeError("unshare (util-linux) is needed for nodes in their own mount namespace")
        self.port = free_port()
        os.environ["RAY_AUTH_MODE"] = "disabled"  # see LocalRayCluster.start
        ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
        common = ["--disable-usage-stats", "--include-dashboard", "false"]
        health = json.dumps(
            {"health_check_period_ms": 500, "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}
        )
        subprocess.run(
            [
                ray,
                "start",
                "--head",
                "--node-ip-address",
                self.driver_ip,
                "--port",
                str(self.port),
                "--num-cpus",
                "0",
                "--temp-dir",
                str(self.root),
                "--system-config",
                health,
                *own_ports(head=True),
                *common,
            ],
            env=cluster_env(self.root),
            check=True,
            capture_output=True,
            text=True,
            timeout=180,
        )
        try:
            for ip in self.node_ips:
                self.add_node(ip)
        except BaseException:
            self.stop()
            raise

    def add_node(self, ip: str) -> None:
        """Start a worker node on ``ip`` in a mount namespace of its own, its hidden folders empty (a cold node)."""
        for folder in self.hidden:
            folder.mkdir(parents=True, exist_ok=True)
        mounts = " && ".join(f"mount -t tmpfs -o size=2g restyle-hidden {shlex_quote(str(f))}" for f in self.hidden)
        ray = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
        start = " ".join(
            shlex_quote(a)
            for a in [
                ray,
                "start",
                "--address",
                self.address,
                "--node-ip-address",
                ip,
                "--num-cpus",
                str(self.cpus_per_node),
                *own_ports(head=False),
                "--disable-usage-stats",
            ]
        )
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", f"{mounts} && {start}"],
            env=cluster_env(self.root, RESTYLE_NODE_CACHE=str(self.node_cache)),
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode:
            raise RuntimeError(f"node {ip} did not start: {(done.stderr or done.stdout)[-2000:]}")

    def stop(self) -> None:
        stop_ray_processes(self.root)
        shutil.rmtree(self.root, ignore_errors=True)
        os.environ.pop("RAY_AUTH_MODE", None)


def shlex_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
