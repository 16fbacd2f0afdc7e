"""Readers for the files under ``deploy/``: the KubeRay manifests as dicts, the Dockerfile as
instructions, the lock as pins. Shared by the deploy tests."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERAY = DEPLOY / "kuberay"
DOCKERFILE = DEPLOY / "Dockerfile"
LOCK = DEPLOY / "requirements.lock"
RAYCLUSTER_SCHEMA = KUBERAY / "schema" / "raycluster-v1.schema.json"
NAMESPACE = "lossweep"


@dataclass(frozen=True)
class Manifest:
    path: Path
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    def __str__(self) -> str:
        return f"{self.path.name}:{self.kind}/{self.name}"


def manifest_files() -> list[Path]:
    return sorted(KUBERAY.glob("*.yaml"))


def load_manifests() -> list[Manifest]:
    out: list[Manifest] = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append(Manifest(path, doc))
    return out


def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m.kind == kind]


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [m for m in by_kind(manifests, kind) if name is None or m.name == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[str(m) for m in found]}"
    return found[0]


@dataclass(frozen=True)
class PodTemplate:
    """One pod template of the manifests, with where it came from."""

    where: str
    template: dict[str, Any]

    @property
    def spec(self) -> dict[str, Any]:
        return self.template["spec"]

    def containers(self, *, init: bool = True) -> list[dict[str, Any]]:
        found = list(self.spec.get("containers", []))
        return [*self.spec.get("initContainers", []), *found] if init else found


def pod_templates(manifests: list[Manifest]) -> Iterator[PodTemplate]:
    for m in manifests:
        spec = m.doc.get("spec", {})
        if m.kind == "RayCluster":
            yield PodTemplate(f"{m}/head", spec["headGroupSpec"]["template"])
            for group in spec.get("workerGroupSpecs", []):
                yield PodTemplate(f"{m}/{group['groupName']}", group["template"])
        elif "template" in spec and "spec" in spec["template"]:
            yield PodTemplate(str(m), spec["template"])


def ray_start_resources(value: str) -> dict[str, float]:
    """The custom resources of a KubeRay ``rayStartParams.resources`` value. KubeRay pastes it into
    a shell command line (``--resources=VALUE``), hence the extra quoting: undo it as the shell does."""
    words = shlex.split(f"--resources={value}")
    assert len(words) == 1, f"rayStartParams.resources {value!r} splits into several shell words"
    return json.loads(words[0].removeprefix("--resources="))


# ----------------------------------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """The Dockerfile's instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        text = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = text.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, f"{path}: the last instruction ends with a line continuation"
    return out


def dockerfile_args(instructions: list[Instruction]) -> dict[str, str]:
    """``ARG NAME=default`` defaults."""
    out: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            out[name] = default
    return out


def dockerfile_env(instructions: list[Instruction]) -> dict[str, str]:
    """``ENV`` assignments (``KEY=value`` form), in order; ``$VAR`` references are left as written."""
    out: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ENV":
            for word in shlex.split(ins.args):
                key, sep, value = word.partition("=")
                assert sep, f"line {ins.line}: use ENV KEY=value, not the legacy ENV KEY value form"
                out[key] = value
    return out


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not an exec-form list: {args}"
    return value


# ------------------------------------------------------------------------------------------------ lock


def lock_pins(path: Path = LOCK) -> dict[str, str]:
    """``{canonical name: version}`` of ``name==version`` lines (comments and blanks skipped)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{path.name}:{number}: not an exact pin: {raw}"
        name = canonicalize_name(req.name)
        assert name not in pins, f"{path.name}:{number}: {name} pinned twice"
        pins[name] = specs[0].version
    return pins
