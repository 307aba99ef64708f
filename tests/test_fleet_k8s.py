"""Kubernetes Jobs for a fleet run, rendered offline and validated against the Kubernetes
schema (kubernetes-validate bundles it; strict: no field Kubernetes does not know)."""

from __future__ import annotations

import pytest

from tests.cli_run import wb

kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
yaml = pytest.importorskip("yaml")

PLAN = """\
schema = "wattbench.fleet-plan/1"
run_id = "H100_fleet.2026"
results = "/fleet/results"

[[problems]]
kernel = "matmul"
shape = "8192x8192x8192"
dtype = "bf16"
"""


def test_the_manifests_are_valid_kubernetes_and_pin_one_job_to_each_node(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    out = tmp_path / "fleet.yaml"
    r = wb("fleet", "k8s", "render", str(plan), "--nodes", "gpu-01,GPU_02", "--gpus-per-node",
           "8", "--image", "registry.example/wattbench:0.1", "--results-pvc", "fleet-results",
           "--gpu-product", "NVIDIA-H100-80GB-HBM3", "-o", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    docs = list(yaml.safe_load_all(out.read_text()))
    for doc in docs:
        kv.validate(doc, kv.latest_version(), strict=True)  # raises on any schema error
    config, *jobs = docs
    assert config["kind"] == "ConfigMap" and config["data"]["plan.toml"] == PLAN
    assert [j["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/hostname"]
            for j in jobs] == ["gpu-01", "GPU_02"]  # fmt: skip
    for job in jobs:
        pod = job["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 8
        assert c["securityContext"]["capabilities"]["add"] == ["SYS_ADMIN"]
        assert c["command"][-1] == "/etc/wattbench/plan.toml"
        assert {"name": "results", "mountPath": "/fleet/results"} in c["volumeMounts"]
        assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert jobs[1]["metadata"]["name"] == "wattbench-h100-fleet-2026-gpu-02"  # DNS-1123


def test_an_object_kubernetes_would_refuse_is_caught_by_the_validator():
    """The check can fail: a Job with a misspelt field is refused."""
    bad = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
           "spec": {"template": {"spec": {"containerz": []}}}}  # fmt: skip
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, kv.latest_version(), strict=True)
