"""Kubernetes manifests for a fleet run: one Job per GPU node running the node agent.

Rendered offline (nothing talks to a cluster): a ConfigMap holding the plan, and for each node a
Job pinned to it (``kubernetes.io/hostname``, and the labels the NVIDIA GPU Operator's feature
discovery sets: ``nvidia.com/gpu.present``, optionally ``nvidia.com/gpu.product``), asking for all
its GPUs (``nvidia.com/gpu``), with ``SYS_ADMIN`` (needed to set clocks and power limits), and the
results volume mounted where the plan's ``results`` points. ``WATTBENCH_FLEET_HOST`` is the node
name (downward API), so the results tree is the same as under Slurm. A Job that fails is retried
by Kubernetes; the agent resumes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from wattbench.profiler.errors import UsageError
from wattbench.profiler.export.yamltext import Literal, dump
from wattbench.profiler.fleet.node import HOST_ENV
from wattbench.profiler.fleet.plan import FleetPlan

PLAN_MOUNT = "/etc/wattbench"
LABEL = "wattbench.dev/run-id"
#: GPU nodes are usually tainted so that only pods asking for GPUs land there
TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@dataclass(frozen=True)
class K8sOptions:
    image: str
    gpus_per_node: int
    namespace: str = "default"
    results_pvc: str | None = None  # a PersistentVolumeClaim every node can mount (ReadWriteMany)
    gpu_product: str | None = None  # nvidia.com/gpu.product, as the GPU Operator labels nodes
    backoff_limit: int = 4


def dns_name(text: str, limit: int = 63) -> str:
    """A DNS-1123 label from any text (lowercase alphanumerics and '-')."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return name[:limit].rstrip("-") or "x"


def manifests(plan: FleetPlan, nodes: list[str], opts: K8sOptions) -> list[dict[str, Any]]:
    if not nodes:
        raise UsageError("no node to render a Job for", "pass --nodes node1,node2,...")
    if not opts.results_pvc:
        raise UsageError(
            "no results volume", "pass --results-pvc with a ReadWriteMany claim every node mounts"
        )
    labels = {"app.kubernetes.io/name": "wattbench", LABEL: dns_name(plan.run_id)}
    config = dns_name(f"wattbench-{plan.run_id}-plan")
    out: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": config, "namespace": opts.namespace, "labels": labels},
            "data": {"plan.toml": Literal(plan.path.read_text(encoding="utf-8"))},
        }
    ]
    selector_extra = {"nvidia.com/gpu.present": "true"}
    if opts.gpu_product:
        selector_extra["nvidia.com/gpu.product"] = opts.gpu_product
    claim = {"claimName": opts.results_pvc}
    for node in nodes:
        name = dns_name(f"wattbench-{plan.run_id}-{node}")
        container = {
            "name": "wattbench",
            "image": opts.image,
            "command": ["wattbench", "fleet", "node", f"{PLAN_MOUNT}/plan.toml"],
            "env": [{"name": HOST_ENV, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            "resources": {"limits": {"nvidia.com/gpu": opts.gpus_per_node}},
            "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}},
            "volumeMounts": [
                {"name": "plan", "mountPath": PLAN_MOUNT, "readOnly": True},
                {"name": "results", "mountPath": str(plan.results)},
            ],
        }
        out.append(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": name, "namespace": opts.namespace, "labels": labels},
                "spec": {
                    "backoffLimit": opts.backoff_limit,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "restartPolicy": "OnFailure",
                            "nodeSelector": {"kubernetes.io/hostname": node, **selector_extra},
                            "tolerations": [TOLERATION],
                            "containers": [container],
                            "volumes": [
                                {"name": "plan", "configMap": {"name": config}},
                                {"name": "results", "persistentVolumeClaim": claim},
                            ],
                        },
                    },
                },
            }
        )
    return out


def render(docs: list[dict[str, Any]], plan: FleetPlan) -> str:
    head = f"wattbench fleet run {plan.run_id}: {len(docs) - 1} node Job(s) and the plan"
    return "".join(
        ("---\n" if i else "") + dump(d, head if not i else "") for i, d in enumerate(docs)
    )
