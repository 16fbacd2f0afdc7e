"""The KubeRay manifests: they parse, pass the Kubernetes schemas (kubernetes-validate, strict) and
KubeRay's RayCluster schema (deploy/kuberay/schema, from the CRD), and agree with each other, with
the Dockerfile and with the service's settings: images, ports, Secrets and their keys, ConfigMap
keys, volumes, environment variable names."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import pytest
from packaging.version import Version

from lossweep.local_cluster import TRIAL_DRIVER_RESOURCE
from service.settings import Settings
from tests.deploy.deploy_files import (
    KUBERAY,
    NAMESPACE,
    RAYCLUSTER_SCHEMA,
    ROOT,
    Manifest,
    by_kind,
    dockerfile_env,
    dockerfile_instructions,
    exec_form,
    load_manifests,
    lock_pins,
    manifest_files,
    one,
    pod_templates,
    ray_start_resources,
)
from tests.deploy.kuberay_rules import kuberay_errors

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the dev extra")

#: Oldest Kubernetes the manifests promise to work on, and the newest the validator knows.
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
MANIFESTS = load_manifests()
BUILTIN = [m for m in MANIFESTS if m.kind != "RayCluster"]
REQUIRED_SERVICE_ENV = (
    "LOSSWEEP_RAY_ADDRESS",
    "LOSSWEEP_DASHBOARD_URL",
    "LOSSWEEP_STORAGE_ROOT",
    "LOSSWEEP_DATABASE_URL",
)
#: KubeRay reads the token from this key of ``authOptions.secretName`` (RAY_AUTH_TOKEN_SECRET_KEY).
KUBERAY_TOKEN_KEY = "auth_token"
SOURCE_DIRS = ("trainables", "search_spaces", "service", "lossweep", "deploy")


def _raycluster() -> dict[str, Any]:
    return one(MANIFESTS, "RayCluster").doc


def _service_container() -> dict[str, Any]:
    spec = one(MANIFESTS, "Deployment", "lossweep-service").doc["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == "lossweep-service")


def _literal_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def _config_data() -> dict[str, str]:
    return one(MANIFESTS, "ConfigMap", "lossweep-config").doc["data"]


def _secrets() -> dict[str, set[str]]:
    return {m.name: set(m.doc.get("stringData", {})) | set(m.doc.get("data", {})) for m in by_kind(MANIFESTS, "Secret")}


# ------------------------------------------------------------------------------------------- parsing


def test_every_manifest_parses_and_names_the_namespace() -> None:
    assert [p.name for p in manifest_files()][:1] == ["00-namespace.yaml"], "the namespace must be applied first"
    assert MANIFESTS, f"no manifests under {KUBERAY}"
    for m in MANIFESTS:
        assert {"apiVersion", "kind", "metadata"} <= set(m.doc), m
        if m.kind != "Namespace":
            assert m.doc["metadata"].get("namespace") == NAMESPACE, f"{m}: metadata.namespace must be {NAMESPACE}"
    one(MANIFESTS, "Namespace", NAMESPACE)
    names = [(m.kind, m.name) for m in MANIFESTS]
    assert len(names) == len(set(names)), "a kind/name pair is defined twice"


def test_files_sort_in_apply_order() -> None:
    # The README applies the files in name order: dependencies must come first.
    order = {m.kind: i for i, m in reversed(list(enumerate(MANIFESTS)))}
    assert order["Namespace"] < order["Secret"] < order["ConfigMap"] < order["PersistentVolumeClaim"]
    assert order["PersistentVolumeClaim"] < order["RayCluster"] < order["Deployment"]
    readme = (KUBERAY / "README.md").read_text()
    for path in manifest_files():
        assert path.name in readme, f"README.md does not mention {path.name}"


# -------------------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("manifest", BUILTIN, ids=str)
def test_builtin_resources_pass_the_kubernetes_schema(manifest: Manifest, version: str) -> None:
    try:
        kubernetes_validate.validate(manifest.doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{manifest} (Kubernetes {version}): {path}: {exc.message}")


def _raycluster_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(RAYCLUSTER_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _schema_errors(doc: dict[str, Any]) -> list[str]:
    errors = sorted(_raycluster_validator().iter_errors(doc), key=lambda e: list(e.path))
    return [f"{'.'.join(str(p) for p in e.path)}: {e.message}" for e in errors]


def test_raycluster_passes_the_kuberay_schema() -> None:
    assert _schema_errors(_raycluster()) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["spec"]["workerGroupSpecs"][0].update(maxReplica=3), "maxReplica"),
        (lambda d: d["spec"]["workerGroupSpecs"][0].update(minReplicas="0"), "'0' is not of type 'integer'"),
        (lambda d: d["spec"]["authOptions"].update(mode="password"), "'password' is not one of"),
        (lambda d: d["spec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}), "0 is not of type 'string'"),
        (lambda d: d["spec"]["workerGroupSpecs"][0].pop("groupName"), "'groupName' is a required property"),
    ],
    ids=["misspelt-field", "string-count", "auth-mode", "non-string-param", "missing-group-name"],
)
def test_kuberay_schema_catches_mistakes(mutate: Any, expected: str) -> None:
    # The schema is only worth something if it refuses what the API server would refuse or prune.
    doc = copy.deepcopy(_raycluster())
    mutate(doc)
    errors = _schema_errors(doc)
    assert any(expected in e for e in errors), errors


def test_raycluster_passes_the_operators_own_checks() -> None:
    assert kuberay_errors(_raycluster()["spec"]) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s["autoscalerOptions"].pop("version"), "idleTimeoutSeconds needs autoscalerOptions.version v2"),
        (lambda s: s["workerGroupSpecs"][0].update(minReplicas=9), "minReplicas 9 > maxReplicas 8"),
        (lambda s: s["headGroupSpec"].update(resources={"CPU": "1"}), "both in rayStartParams"),
        (lambda s: s.update(rayVersion="2.50.0"), "needs Ray >= 2.52.0"),
        (lambda s: s["workerGroupSpecs"][1]["template"]["spec"].update(restartPolicy="Always"), "restartPolicy"),
    ],
    ids=["idle-timeout-v1", "min-above-max", "double-resources", "old-ray-token", "restart-policy"],
)
def test_operator_checks_catch_mistakes(mutate: Any, expected: str) -> None:
    spec = copy.deepcopy(_raycluster()["spec"])
    mutate(spec)
    assert any(expected in e for e in kuberay_errors(spec)), kuberay_errors(spec)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_raycluster_pod_templates_pass_the_kubernetes_schema(version: str) -> None:
    # The KubeRay schema leaves pod templates to Kubernetes' own PodTemplateSpec schema.
    schema = json.loads(RAYCLUSTER_SCHEMA.read_text())
    assert schema["properties"]["spec"]["properties"]["headGroupSpec"]["properties"]["template"].get(
        "x-lossweep-pod-template"
    )
    for pod in pod_templates([one(MANIFESTS, "RayCluster")]):
        wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": pod.template}
        try:
            kubernetes_validate.validate(wrapper, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{pod.where} (Kubernetes {version}): {'.'.join(map(str, exc.path))}: {exc.message}")


def test_raycluster_shape() -> None:
    rc = _raycluster()["spec"]
    import ray

    assert rc["rayVersion"] == ray.__version__ == lock_pins()["ray"], "rayVersion, the installed Ray and the lock"
    assert rc["enableInTreeAutoscaling"] is True
    assert rc["authOptions"] == {"mode": "token", "secretName": "lossweep-ray-auth"}
    head = rc["headGroupSpec"]
    resources = ray_start_resources(head["rayStartParams"]["resources"])
    assert resources.get(TRIAL_DRIVER_RESOURCE, 0) >= 1, f"the head must declare {TRIAL_DRIVER_RESOURCE}"
    ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert ports["dashboard"] == 8265
    groups = {g["groupName"]: g for g in rc["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    for name, group in groups.items():
        assert 0 <= group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"], name
        assert group["maxReplicas"] >= 1, name
    gpu_limits = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert int(gpu_limits["nvidia.com/gpu"]) >= 1
    cpu_limits = groups["cpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in cpu_limits


# ---------------------------------------------------------------------------------------- consistency


def _project_version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_images_agree_with_each_other_and_the_project_version() -> None:
    version = _project_version()
    cpu_image, gpu_image = f"lossweep:{version}", f"lossweep:{version}-cuda"
    for pod in pod_templates(MANIFESTS):
        for c in pod.containers():
            expected = gpu_image if pod.where.endswith("/gpu") else cpu_image
            assert c["image"] == expected, f"{pod.where}/{c['name']}: image {c['image']}, expected {expected}"
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert f"-t {cpu_image} " in dockerfile and f"-t {gpu_image} " in dockerfile, "the Dockerfile's build commands"
    readme = (KUBERAY / "README.md").read_text()
    assert cpu_image in readme and gpu_image in readme


def test_secret_references_name_existing_secrets_and_keys() -> None:
    secrets = _secrets()
    rc = _raycluster()["spec"]
    assert KUBERAY_TOKEN_KEY in secrets[rc["authOptions"]["secretName"]]
    used: set[str] = {rc["authOptions"]["secretName"]}
    for pod in pod_templates(MANIFESTS):
        for c in pod.containers():
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, f"{pod.where}/{c['name']} {e['name']}: no Secret {ref['name']}"
                    assert ref["key"] in secrets[ref["name"]], f"{pod.where}: Secret {ref['name']} has no {ref['key']}"
                    used.add(ref["name"])
            for src in c.get("envFrom", []):
                if "secretRef" in src:
                    assert src["secretRef"]["name"] in secrets, f"{pod.where}: no Secret {src['secretRef']['name']}"
                    used.add(src["secretRef"]["name"])
    assert used == set(secrets), f"Secrets defined but never used: {set(secrets) - used}"
    # The service authenticates to Ray with the very token KubeRay gives the cluster.
    service_env = {e["name"]: e for e in _service_container()["env"]}
    ref = service_env["LOSSWEEP_RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": rc["authOptions"]["secretName"], "key": KUBERAY_TOKEN_KEY}


def test_configmap_references_name_existing_keys() -> None:
    maps = {m.name: set(m.doc.get("data", {})) for m in by_kind(MANIFESTS, "ConfigMap")}
    for pod in pod_templates(MANIFESTS):
        for c in pod.containers():
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    assert ref["key"] in maps.get(ref["name"], set()), f"{pod.where}: {ref} does not exist"
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    assert src["configMapRef"]["name"] in maps, f"{pod.where}: no ConfigMap {src['configMapRef']}"


def test_volumes_and_claims_agree() -> None:
    claims = {m.name for m in by_kind(MANIFESTS, "PersistentVolumeClaim")}
    used_claims: set[str] = set()
    storage_root = _config_data()["LOSSWEEP_STORAGE_ROOT"]
    for pod in pod_templates(MANIFESTS):
        volumes = {v["name"]: v for v in pod.spec.get("volumes", [])}
        mounted: set[str] = set()
        for c in pod.containers():
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{pod.where}/{c['name']}: mounts undeclared volume {mount['name']}"
                mounted.add(mount["name"])
                if mount["name"] == "sweeps":
                    assert mount["mountPath"] == storage_root, f"{pod.where}: sweeps not at {storage_root}"
        assert mounted == set(volumes), f"{pod.where}: volumes never mounted: {set(volumes) - mounted}"
        assert "sweeps" in volumes, f"{pod.where}: every pod needs the sweep storage"
        for v in volumes.values():
            if "persistentVolumeClaim" in v:
                claim = v["persistentVolumeClaim"]["claimName"]
                assert claim in claims, f"{pod.where}: no PersistentVolumeClaim {claim}"
                used_claims.add(claim)
    assert used_claims == claims
    sweeps = one(MANIFESTS, "PersistentVolumeClaim", "lossweep-sweeps").doc
    assert sweeps["spec"]["accessModes"] == ["ReadWriteMany"], "head, workers and service all mount it"


def test_service_points_at_the_head_dashboard() -> None:
    rc = one(MANIFESTS, "RayCluster")
    env = _literal_env(_service_container())
    url = urlparse(env["LOSSWEEP_RAY_ADDRESS"])
    # KubeRay names the head's Service <RayCluster name>-head-svc.
    assert url.hostname in {f"{rc.name}-head-svc", f"{rc.name}-head-svc.{NAMESPACE}.svc.cluster.local"}
    head_ports = {
        p["name"]: p["containerPort"]
        for p in rc.doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert url.port == head_ports["dashboard"]
    assert urlparse(env["LOSSWEEP_DASHBOARD_URL"]).port == head_ports["dashboard"], "README port-forwards 8265"


def test_service_ports_agree() -> None:
    container = _service_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    svc = one(MANIFESTS, "Service", "lossweep-service").doc["spec"]
    for port in svc["ports"]:
        assert port["targetPort"] in ports or port["targetPort"] in ports.values()
    assert container["command"][-1] == str(ports["http"]) and container["command"][-2] == "--port"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", ports["http"])
    dep = one(MANIFESTS, "Deployment", "lossweep-service").doc["spec"]
    assert dep["selector"]["matchLabels"].items() <= dep["template"]["metadata"]["labels"].items()
    assert svc["selector"].items() <= dep["template"]["metadata"]["labels"].items()
    instructions = dockerfile_instructions()
    exposed = {int(p) for i in instructions if i.keyword == "EXPOSE" for p in i.args.split()}
    assert {ports["http"], 8265} <= exposed
    cmd = exec_form(next(i for i in instructions if i.keyword == "CMD").args)
    assert cmd == container["command"], "the image's default command is the service, as deployed"


def _known_lossweep_variables() -> set[str]:
    names = {f"LOSSWEEP_{name.upper()}" for name in Settings.model_fields}
    pattern = re.compile(r"LOSSWEEP_[A-Z_]+")
    for folder in SOURCE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            names.update(pattern.findall(path.read_text()))
    return names


def _all_env_names() -> dict[str, str]:
    found: dict[str, str] = {}
    for pod in pod_templates(MANIFESTS):
        for c in pod.containers():
            for e in c.get("env", []):
                found[e["name"]] = f"{pod.where}/{c['name']}"
    for key in _config_data():
        found[key] = "ConfigMap lossweep-config"
    for key in dockerfile_env(dockerfile_instructions()):
        found[key] = "deploy/Dockerfile ENV"
    return found


def test_every_lossweep_variable_is_one_the_code_reads() -> None:
    known = _known_lossweep_variables()
    for name, where in _all_env_names().items():
        if name.startswith("LOSSWEEP_"):
            assert name in known, f"{where}: {name} is neither a service setting nor read by any module"


def test_service_environment_builds_valid_settings(tmp_path: Path) -> None:
    env = _literal_env(_service_container())
    for name in REQUIRED_SERVICE_ENV:
        assert name in {e["name"] for e in _service_container()["env"]}, f"the service Deployment lacks {name}"
    values = {**{k: v for k, v in _config_data().items() if k.startswith("LOSSWEEP_")}, **env}
    fields = {f"LOSSWEEP_{n.upper()}": n for n in Settings.model_fields}
    kwargs: dict[str, Any] = {fields[k]: v for k, v in values.items() if k in fields}
    kwargs["ray_auth_token"] = "x" * 64
    settings = Settings(_env_file=None, **kwargs)  # type: ignore[call-arg]
    assert settings.resolved_storage_root == _config_data()["LOSSWEEP_STORAGE_ROOT"]
    assert settings.resolved_database_url.startswith("sqlite:////var/lib/lossweep/db/")
    docker_env = dockerfile_env(dockerfile_instructions())
    assert settings.python_executable == docker_env["VIRTUAL_ENV"] + "/bin/python"
    # The database lives on the mounted volume, not in the container's writable layer.
    db_dir = str(Path(settings.resolved_database_url.removeprefix("sqlite:///")).parent)
    mounts = {m["mountPath"] for m in _service_container()["volumeMounts"]}
    assert db_dir in mounts


def test_seed_init_container_runs_the_script_the_image_copies() -> None:
    spec = one(MANIFESTS, "Deployment", "lossweep-service").doc["spec"]["template"]["spec"]
    init = next(c for c in spec["initContainers"] if c["name"] == "seed-admin-token")
    script = Path(init["command"][1])
    instructions = dockerfile_instructions()
    workdir = next(i.args for i in instructions if i.keyword == "WORKDIR")
    copies = {str(Path(workdir) / i.args.split()[1]) for i in instructions if i.keyword == "COPY"}
    assert str(script) in copies, f"{script} is not copied into the image"
    assert (ROOT / "deploy" / script.name).is_file()
    service_env = _literal_env(_service_container())
    assert _literal_env(init)["LOSSWEEP_DATABASE_URL"] == service_env["LOSSWEEP_DATABASE_URL"]
    assert init["volumeMounts"] == [m for m in _service_container()["volumeMounts"] if m["name"] == "service-db"]


def test_kubernetes_versions_cover_the_promise() -> None:
    assert Version(K8S_VERSIONS[0]) <= Version(K8S_VERSIONS[1])
