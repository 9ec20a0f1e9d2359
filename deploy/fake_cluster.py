"""deploy/ray-cluster.yaml's node types as a Ray ``fake_multinode`` cluster on this machine.

Ray's fake_multinode provider runs the real autoscaler and starts a real raylet on this
machine for each node it launches, as a cloud launcher would start an instance. What is
tested (tests/engines/test_ray_autoscale.py, bench/ray_autoscale.py) is this config,
made from the shipped one: the same worker types, min/max workers and priorities, the
head at 0 CPUs, each node scaled down to ``cpus_per_node`` CPUs and each type to at most
``max_per_type`` nodes (GPU types are left out: no GPU here). Try it::

    python deploy/fake_cluster.py --gcs 127.0.0.1:6380 > /tmp/fake.yaml
    RAY_FAKE_CLUSTER=1 AUTOSCALER_UPDATE_INTERVAL_S=1 ray start --head --port 6380 \\
        --num-cpus 0 --autoscaling-config /tmp/fake.yaml

It uses Ray's autoscaler v1: v2 (which reads ``priority``) needs a template file that
Ray's PyPI wheel does not ship for this provider.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import yaml

SHIPPED = Path(__file__).with_name("ray-cluster.yaml")
FAKE_HEAD_TYPE = "ray.head.default"  # the name the fake provider gives its head


def fake_config(
    gcs_address: str,
    cpus_per_node: int = 1,
    max_per_type: int = 2,
    idle_minutes: float | None = None,
    max_workers: int | None = None,
    shipped: Path = SHIPPED,
) -> dict[str, Any]:
    """The fake_multinode config for ``shipped``'s node types, its head's GCS at ``gcs_address``."""
    cloud = yaml.safe_load(shipped.read_text())
    types: dict[str, Any] = {FAKE_HEAD_TYPE: {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0}}
    for name, spec in cloud["available_node_types"].items():
        if name == cloud["head_node_type"] or spec.get("resources", {}).get("GPU"):
            continue
        fake = {key: copy.deepcopy(spec[key]) for key in ("min_workers", "max_workers", "priority") if key in spec}
        fake["max_workers"] = min(fake.get("max_workers", max_per_type), max_per_type)
        fake["resources"] = {"CPU": cpus_per_node}
        fake["node_config"] = {}
        types[name] = fake
    workers = sum(t.get("max_workers", 0) for t in types.values())
    return {
        "cluster_name": f"{cloud['cluster_name']}-fake",
        "max_workers": min(workers, max_workers) if max_workers else workers,
        "upscaling_speed": cloud.get("upscaling_speed", 1.0),
        "idle_timeout_minutes": cloud["idle_timeout_minutes"] if idle_minutes is None else idle_minutes,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,
        },
        "auth": {"ssh_user": "ubuntu"},
        "docker": {},
        "available_node_types": types,
        "head_node_type": FAKE_HEAD_TYPE,
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gcs", required=True, help="the head's host:port")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--max-per-type", type=int, default=2)
    parser.add_argument("--idle-minutes", type=float, default=None)
    args = parser.parse_args()
    print(
        yaml.safe_dump(fake_config(args.gcs, args.cpus_per_node, args.max_per_type, args.idle_minutes), sort_keys=False)
    )


if __name__ == "__main__":
    main()
