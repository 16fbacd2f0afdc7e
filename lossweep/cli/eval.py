"""``lossweep eval``: a trained model's zero-shot accuracy on downstream tasks, through
lm-evaluation-harness (the ``lm-eval`` extra; ``trainables.downstream``). Heavy imports (torch, the
harness) happen inside the command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from lossweep.cli.train_options import fail
from trainables.downstream.defaults import DEFAULT_EVAL_BATCH, DEFAULT_TASK_CORPUS
from trainables.downstream.local_tasks import LOCAL_TASKS


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)


def resolve_target(target: str) -> tuple[str, dict[str, Any] | None]:
    """``(checkpoint folder, the run's config or None)`` of a checkpoint folder, a Ray Train run folder,
    or a sweep's trial (``SWEEP_DIR/trials/TRIAL_ID`` or ``SWEEP_DIR/TRIAL_ID``); ``ValueError`` when it is none."""
    from search_spaces.run.evaluation import checkpoint_of
    from search_spaces.run.sweep_dir import TRIALS_DIR, read_json, trial_manifest_path
    from trainables.downstream.checkpoint import is_remote, latest_checkpoint
    from trainables.train.checkpoint import is_checkpoint

    if is_remote(target):
        return _resolve_remote(target.rstrip("/"))
    path = Path(target)
    if not path.exists():
        raise ValueError(f"{target} does not exist")
    if is_checkpoint(path):
        return str(path), None
    run_checkpoint = latest_checkpoint(path)
    if run_checkpoint is not None:
        return str(run_checkpoint), None
    trial_id = path.name
    for sweep_dir in (path.parent.parent, path.parent) if path.parent.name == TRIALS_DIR else (path.parent,):
        manifest = read_json(trial_manifest_path(str(sweep_dir), trial_id))
        if manifest is not None:
            return checkpoint_of(str(sweep_dir), trial_id), manifest.get("config")
    raise ValueError(
        f"{target} is not a checkpoint, a Ray Train run folder or a sweep's trial (SWEEP_DIR/trials/TRIAL_ID)"
    )


def _resolve_remote(target: str) -> tuple[str, dict[str, Any] | None]:
    """:func:`resolve_target` on object storage (a sweep dir on S3: its trials, their run folders)."""
    from search_spaces.run import storage
    from search_spaces.run.evaluation import checkpoint_of
    from search_spaces.run.sweep_dir import TRIALS_DIR, read_json, trial_manifest_path
    from trainables.downstream.checkpoint import latest_remote_checkpoint
    from trainables.train.checkpoint import CHECKPOINT_META

    try:
        if storage.exists(storage.join(target, CHECKPOINT_META)):
            return target, None
        run_checkpoint = latest_remote_checkpoint(target)
        if run_checkpoint is not None:
            return run_checkpoint, None
        parent, trial_id = target.rsplit("/", 1)
        grand, parent_name = parent.rsplit("/", 1)
        sweep_dir = grand if parent_name == TRIALS_DIR else parent
        manifest = read_json(trial_manifest_path(sweep_dir, trial_id))
    except OSError as exc:  # credentials, endpoint, bucket: pyarrow's message says which
        raise ValueError(f"{target}: {str(exc).splitlines()[0]}") from None
    if manifest is not None:
        return checkpoint_of(sweep_dir, trial_id), manifest.get("config")
    raise ValueError(
        f"{target} is not a checkpoint, a Ray Train run folder or a sweep's trial (SWEEP_DIR/trials/TRIAL_ID)"
    )


def eval_command(
    target: Annotated[
        str,
        typer.Argument(
            metavar="CHECKPOINT|SWEEP_DIR/TRIAL",
            help="A checkpoint folder, a Ray Train run folder (its last checkpoint) or a sweep's trial.",
        ),
    ],
    tasks: Annotated[
        str,
        typer.Option(
            "--tasks",
            help=f"Comma-separated tasks: local ones ({', '.join(LOCAL_TASKS)}; no network) or lm-eval's own "
            "(hellaswag, arc_easy, piqa, lambada_openai…; data from the Hugging Face Hub).",
        ),
    ] = LOCAL_TASKS[0],
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="The first N questions of each task.")] = None,
    corpus: Annotated[
        str, typer.Option("--corpus", help="Corpus the local tasks are generated from ('stdlib' or 'text:PATH').")
    ] = DEFAULT_TASK_CORPUS,
    preset: Annotated[
        str | None, typer.Option("--preset", help="Load the weights into this model preset instead of the run's.")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Sequences per forward pass.")] = (
        DEFAULT_EVAL_BATCH
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
) -> None:
    """Zero-shot accuracy (± its standard error) of a trained model on downstream tasks."""
    from trainables.downstream.errors import EvalError

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    try:
        checkpoint, config = resolve_target(target)
    except ValueError as exc:
        fail(str(exc))
    try:
        from trainables.downstream.run import evaluate_checkpoint

        scores = evaluate_checkpoint(
            checkpoint, names, config=config, model=preset, limit=limit, corpus=corpus, batch_size=batch_size
        )
    except EvalError as exc:
        fail(str(exc))
    except ValueError as exc:  # a bad --preset or corpus spec from the loaders: already one line
        fail(str(exc).splitlines()[0])
    if as_json:
        typer.echo(json.dumps({"checkpoint": checkpoint, "scores": scores}, indent=2))
        return
    typer.echo(f"checkpoint: {checkpoint}")
    for task, s in scores.items():
        typer.echo(f"{task:<32} {s['metric']} {s['acc']:.4f} ± {s['acc_se']:.4f}  (n={s['n']})")
