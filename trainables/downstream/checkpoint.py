"""A trained model back from its checkpoint: the GPT with the trial's shape, precision and logit
transform, the tokenizer it was trained with, and its window (``seq_len``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.downstream.errors import EvalError
from trainables.train.checkpoint import CHECKPOINT_FILE, CHECKPOINT_META, is_checkpoint, read_meta, read_state
from trainables.train.config import TrainConfig


@dataclass(frozen=True)
class TrainedModel:
    model: Any  # trainables.model.gpt.GPT, in eval mode
    tokenizer: Any  # trainables.data.tokenizer.Tokenizer
    config: TrainConfig
    source: str  # the checkpoint folder, or "untrained"
    step: int


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint of a Ray Train run folder with the most steps (the last one it kept)."""
    found = [p for p in run_dir.glob("checkpoint_*") if is_checkpoint(p)] if run_dir.is_dir() else []
    return max(found, key=lambda p: (int(read_meta(p).get("step", 0)), p.name), default=None)


def is_remote(path: str) -> bool:
    """A checkpoint or run folder on object storage (``s3://``, ``gs://``...), not on this node's disk."""
    return "://" in path


def latest_remote_checkpoint(run_uri: str) -> str | None:
    """:func:`latest_checkpoint` of a run folder on object storage (what a sweep dir on S3 holds)."""
    import json

    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(run_uri)
    scheme = run_uri.split("://", 1)[0]
    best: tuple[int, str] | None = None
    for info in fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        if info.type != pafs.FileType.Directory or not info.base_name.startswith("checkpoint_"):
            continue
        files = {f.base_name for f in fs.get_file_info(pafs.FileSelector(info.path))}
        if not {CHECKPOINT_FILE, CHECKPOINT_META} <= files:
            continue
        with fs.open_input_stream(f"{info.path}/{CHECKPOINT_META}") as stream:
            step = int(json.loads(stream.read()).get("step", 0))
        best = max(best or (step, info.path), (step, info.path))
    return None if best is None else f"{scheme}://{best[1]}"


def fetch_checkpoint(uri: str, into: Path) -> Path:
    """Copies a checkpoint folder from object storage to ``into`` (a local folder) and returns the copy."""
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(uri)
    local = into / root.rstrip("/").rsplit("/", 1)[-1]
    local.mkdir(parents=True, exist_ok=True)
    for name in (CHECKPOINT_FILE, CHECKPOINT_META):
        try:
            with fs.open_input_stream(f"{root.rstrip('/')}/{name}") as src, (local / name).open("wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
        except FileNotFoundError:
            raise EvalError(f"{uri} is not a checkpoint folder (no {name})") from None
    return local


def build_model(config: TrainConfig, *, device: str = "cpu") -> tuple[Any, Any]:
    """A fresh (untrained, seeded) model of ``config`` and its tokenizer."""
    import torch

    from trainables.data.tokens import load_dataset
    from trainables.losses.combine import logit_transform
    from trainables.model.gpt import GPT
    from trainables.train.engine import resolve_model_config

    data = load_dataset(config.data)
    if data.tokenizer is None:
        raise EvalError(f"corpus {config.data.corpus!r} is pre-tokenized and has no tokenizer: text tasks need one")
    model = GPT(
        resolve_model_config(config, data.vocab_size),
        precision=config.precision,
        head_precision=config.head_precision,
        logit_transform=logit_transform(config.loss),
        generator=torch.Generator().manual_seed(config.seed),
    )
    return model.to(device).eval(), data.tokenizer


def load_trained(
    checkpoint: Path, *, config: TrainConfig | None = None, model: str | None = None, device: str = "cpu"
) -> TrainedModel:
    """The model of ``checkpoint``. ``config``: the run's (default: the one the checkpoint records);
    ``model``: another model preset to load the weights into (a checkpoint that does not fit is refused)."""
    if not is_checkpoint(checkpoint):
        raise EvalError(f"{checkpoint} is not a lossweep checkpoint (a folder with state.pt and meta.json)")
    meta = read_meta(checkpoint)
    if config is None:
        if "config" not in meta:
            raise EvalError(f"checkpoint {checkpoint} records no run config; evaluate it as SWEEP_DIR/TRIAL_ID")
        config = TrainConfig.from_dict(meta["config"])
    if model is not None:
        from dataclasses import replace

        config = replace(config, model=model)
    net, tokenizer = build_model(config, device=device)
    state = read_state(checkpoint, device)
    problem = _misfit(net.state_dict(), state["model"])
    if problem:
        raise EvalError(f"checkpoint {checkpoint} does not fit model {config.model!r} ({problem})")
    net.load_state_dict(state["model"])
    return TrainedModel(net.eval(), tokenizer, config, str(checkpoint), int(meta.get("step", 0)))


def _misfit(expected: dict[str, Any], got: dict[str, Any]) -> str:
    """What keeps ``got`` (a checkpoint's weights) from loading into a model with ``expected``, in a few
    words (torch's own message lists every tensor); empty when it fits."""
    shapes = [
        (k, tuple(got[k].shape), tuple(v.shape)) for k, v in expected.items() if k in got and got[k].shape != v.shape
    ]
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    parts = []
    if shapes:
        name, theirs, ours = shapes[0]
        parts.append(
            f"{len(shapes)} tensor(s) of another shape, e.g. {name}: {list(theirs)} in the checkpoint, "
            f"{list(ours)} in the model"
        )
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} not in the model, e.g. {unexpected[0]}")
    return "; ".join(parts)
