"""deploy/ray: the VM cluster config passes Ray's own validation; the KubeRay manifest has the right shape."""

from __future__ import annotations

from pathlib import Path

import ray
import yaml

RAY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "ray"


def test_cluster_yaml_is_valid_for_ray_up():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = prepare_config(yaml.safe_load((RAY_DIR / "cluster.yaml").read_text()))
    validate_config(cfg)  # what `ray up` runs first
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--num-cpus=0" in head and "prefect worker start --pool mu0-process" in head
    assert "--dashboard-host=127.0.0.1" in head


def test_kuberay_cluster_has_gpu_workers_and_an_in_cluster_prefect_driver():
    doc = yaml.safe_load((RAY_DIR / "kuberay-raycluster.yaml").read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    spec = doc["spec"]
    assert spec["rayVersion"] == ray.__version__
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    gpu = groups["gpu"]
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == gpu["rayStartParams"]["num-gpus"] == "1"
    assert gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    containers = {c["name"]: c for c in head["template"]["spec"]["containers"]}
    worker = containers["prefect-worker"]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["RAY_ADDRESS"] == "auto" and "PREFECT_API_URL" in env
    mounts = lambda c: {m["mountPath"] for m in c.get("volumeMounts", [])}  # noqa: E731
    assert "/tmp/ray" in mounts(worker) & mounts(containers["ray-head"])
