"""The checks KubeRay's operator makes on a RayCluster beyond its CRD schema (``ValidateRayClusterSpec``
in ``ray-operator/controllers/ray/utils/validation.go``, v1.7.0), for the fields these manifests
use. A RayCluster that breaks one is accepted by the API server and then never reconciled: the
operator only logs the error and records an event, so catching it here saves a confusing deploy."""

from __future__ import annotations

from typing import Any

from packaging.version import InvalidVersion, Version

MIN_RAY_FOR_TOKEN_AUTH = Version("2.52.0")
MIN_RAY_FOR_K8S_TOKEN_AUTH = Version("2.55.0")
#: rayStartParams that declare resources, which the group-level ``resources`` field must not repeat.
RAY_START_RESOURCE_PARAMS = ("num-cpus", "num-gpus", "memory", "resources")


def kuberay_errors(spec: dict[str, Any]) -> list[str]:
    """What KubeRay's validation would refuse in ``spec`` (a RayCluster's ``spec``); empty when fine."""
    errors: list[str] = []
    autoscaler = spec.get("autoscalerOptions") or {}
    v2 = autoscaler.get("version") == "v2"
    autoscaling = bool(spec.get("enableInTreeAutoscaling"))
    head = spec["headGroupSpec"]
    groups = [("Head", head), *((g.get("groupName", "?"), g) for g in spec.get("workerGroupSpecs", []))]
    for name, group in groups:
        pod = group["template"].get("spec", {})
        if not pod.get("containers"):
            errors.append(f"{name}: needs at least one container")
        params = group.get("rayStartParams") or {}
        if group.get("resources") and any(params.get(k) for k in RAY_START_RESOURCE_PARAMS):
            errors.append(f"{name}: resources set both in rayStartParams and in the group's resources field")
        if v2 and pod.get("restartPolicy") not in (None, "Never"):
            errors.append(f"{name}: restartPolicy must be Never or unset with autoscaler v2")
    for group in spec.get("workerGroupSpecs", []):
        name = group.get("groupName", "?")
        low, high = group.get("minReplicas"), group.get("maxReplicas")
        if not autoscaling and (low is None or high is None):
            errors.append(f"worker group {name}: set minReplicas and maxReplicas when autoscaling is off")
        if (low is not None and low < 0) or (high is not None and high < 0):
            errors.append(f"worker group {name}: negative replica bound")
        if low is not None and high is not None and low > high:
            errors.append(f"worker group {name}: minReplicas {low} > maxReplicas {high}")
        idle = group.get("idleTimeoutSeconds")
        if idle is not None and (idle < 0 or not v2):
            errors.append(f"worker group {name}: idleTimeoutSeconds needs autoscalerOptions.version v2 (and >= 0)")
    if autoscaler.get("idleTimeoutSeconds", 0) < 0:
        errors.append("autoscalerOptions.idleTimeoutSeconds must be non-negative")
    auth = spec.get("authOptions") or {}
    if auth.get("mode") == "token":
        try:
            ray_version = Version(spec.get("rayVersion", ""))
        except InvalidVersion:
            errors.append(f"authOptions.mode token needs a valid rayVersion, got {spec.get('rayVersion')!r}")
        else:
            if ray_version < MIN_RAY_FOR_TOKEN_AUTH:
                errors.append(f"authOptions.mode token needs Ray >= {MIN_RAY_FOR_TOKEN_AUTH}")
            if auth.get("enableK8sTokenAuth") and ray_version < MIN_RAY_FOR_K8S_TOKEN_AUTH:
                errors.append(f"authOptions.enableK8sTokenAuth needs Ray >= {MIN_RAY_FOR_K8S_TOKEN_AUTH}")
        if auth.get("enableK8sTokenAuth") and auth.get("secretName"):
            errors.append("authOptions.enableK8sTokenAuth and authOptions.secretName are exclusive")
    elif auth.get("enableK8sTokenAuth"):
        errors.append("authOptions.enableK8sTokenAuth needs authOptions.mode token")
    return errors
