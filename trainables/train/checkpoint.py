"""A run's checkpoint folder: ``state.pt`` (``TrainingRun.state_dict()``) and ``meta.json`` (step, tokens,
config hash and the resolved ``TrainConfig``, so a checkpoint names the model and tokenizer it needs
without the sweep dir around it). Written by rank 0 of the Ray Train loop; read when Ray resumes a run
and by ``lossweep eval`` (``trainables.downstream.checkpoint``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FILE = "state.pt"
CHECKPOINT_META = "meta.json"


def write_checkpoint(run: Any, directory: Path) -> None:
    """The full state of ``run`` (a ``TrainingRun``) into ``directory``."""
    torch.save(run.state_dict(), directory / CHECKPOINT_FILE)
    meta = {
        "step": run.step,
        "tokens": run.tokens,
        "config_hash": run.config.config_hash(),
        "config": run.config.to_dict(),
    }
    (directory / CHECKPOINT_META).write_text(json.dumps(meta))


def read_meta(directory: Path) -> dict[str, Any]:
    return json.loads((directory / CHECKPOINT_META).read_text())  # type: ignore[no-any-return]


def read_state(directory: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    return torch.load(directory / CHECKPOINT_FILE, map_location=device, weights_only=False)  # type: ignore[no-any-return]


def is_checkpoint(directory: Path) -> bool:
    return (directory / CHECKPOINT_FILE).is_file() and (directory / CHECKPOINT_META).is_file()
