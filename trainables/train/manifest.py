"""The manifest of one training run: what exactly ran, so a result can be traced and repeated."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from trainables.data.atomic_file import write_atomic
from trainables.model.compile import compile_enabled
from trainables.train.config import TrainConfig

#: What a run records of its data (``TrainingRun.data_record``): each split's token count, and the windows
#: and tokens of the validation and test evaluations.
DATA_RECORD_KEYS: tuple[str, ...] = ("splits", "evaluation")

_PACKAGES = ("lossweep", "torch", "ray", "optuna", "tokenizers", "numpy")
#: The manifest's file name in a run's folder, and its key of the resolved ``TrainConfig`` (readers take
#: both from here).
MANIFEST_FILE = "manifest.json"
CONFIG_KEY = "config"


def package_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (importing ray or torch is not needed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_sha(path: Path | None = None) -> str | None:
    """Commit of the source checkout this code runs from, if it is one (None for an installed wheel)."""
    where = path or Path(__file__).resolve().parent
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = res.stdout.strip()
    return sha if res.returncode == 0 and len(sha) == 40 else None


def build_manifest(
    config: TrainConfig,
    *,
    corpus_hash: str | None = None,
    vocab_size: int | None = None,
    model: dict[str, Any] | None = None,
    num_params: int | None = None,
    world_size: int = 1,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        CONFIG_KEY: config.to_dict(),
        "config_hash": config.config_hash(),
        "seed": config.seed,
        "method": config.loss.method,
        "versions": package_versions(),
        "git_sha": git_sha(),
        "corpus": config.data.corpus,
        "corpus_hash": corpus_hash,
        "tokenizer": _used_tokenizer(config),
        "vocab_size": vocab_size,
        "model": model,
        "num_params": num_params,
        "world_size": world_size,
        # the effective torch.compile switch (the config's None means "on when training on CUDA")
        "compile": compile_enabled(config.compile, "cuda" if config.use_gpu else "cpu"),
        "platform": platform.platform(),
        "argv": sys.argv,
    }
    if extra:
        manifest.update(extra)
    return manifest


def _used_tokenizer(config: TrainConfig) -> str | None:
    """What the ids are in: a ``shards:`` corpus brings its own tokenizer, whatever ``data.tokenizer`` says."""
    from trainables.data.corpus import CorpusError
    from trainables.data.vocabulary import used_tokenizer

    try:
        return used_tokenizer(config.data.corpus, config.data.tokenizer)
    except (CorpusError, OSError, ValueError):
        return None  # the set cannot be opened: the run fails on it and says why; claim nothing here


def write_manifest(path: str | os.PathLike[str], manifest: dict[str, Any]) -> Path:
    """Writes ``manifest`` as JSON to ``path`` atomically (temporary file, then rename)."""
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
    return write_atomic(path, text.encode())
