"""``lossweep train-local``: one training run in this process, no Ray."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from lossweep.cli.train_options import SUMMARY_KEYS, FlagError, RunFlags, build_train_config, fail, with_run_flags


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the ``lossweep`` app."""
    app.command("train-local")(train_local)


@with_run_flags
def train_local(
    flags: RunFlags,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for manifest.json and metrics.jsonl of this run.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the final metrics as one JSON object on the last line of stdout.")
    ] = False,
) -> None:
    """Train one model in this process (no Ray) and report validation loss.

    Example: lossweep train-local --preset tiny --steps 200 --loss mu_centering
    """
    try:
        config = build_train_config(flags)
    except FlagError as exc:
        fail(str(exc))

    from rich.console import Console

    console = Console(stderr=as_json)
    from trainables.data.corpus import CorpusError
    from trainables.data.sampler import DataSizeError
    from trainables.train.engine import TrainingRun

    try:
        with console.status(f"preparing data ({config.data.corpus}, {config.data.tokenizer})", spinner="dots"):
            run = TrainingRun(config)
    except (CorpusError, DataSizeError, ValueError) as exc:
        fail(str(exc))

    metrics_file = None
    if out is not None:
        from trainables.train.manifest import build_manifest, write_manifest

        out.mkdir(parents=True, exist_ok=True)
        write_manifest(
            out / "manifest.json",
            build_manifest(
                config,
                corpus_hash=run.data.corpus_hash,
                vocab_size=run.vocab_size,
                model=run.model_config.to_dict(),
                num_params=run.module.num_params(),
                extra=run.data_record(),
            ),
        )
        metrics_file = (out / "metrics.jsonl").open("w")

    def record(row: dict[str, Any]) -> None:
        if metrics_file is not None:
            metrics_file.write(json.dumps(row) + "\n")
            metrics_file.flush()

    try:
        if as_json:
            final = run.run(record)
        else:
            final = _run_with_progress(run, console, record)
    except KeyboardInterrupt:
        typer.echo(f"interrupted at step {run.step} of {config.steps}", err=True)
        raise typer.Exit(code=130) from None
    finally:
        if metrics_file is not None:
            metrics_file.close()

    summary = _summary(final)
    if as_json:
        print(json.dumps(summary, default=str))
    else:
        _print_summary(console, run, summary)


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"steps": row.get("step")}
    out.update({k: row.get(k) for k in SUMMARY_KEYS if k != "steps"})
    out.update({k: v for k, v in row.items() if k not in out and k != "step"})
    return out


def _run_with_progress(run: Any, console: Any, record: Any) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    cfg = run.config
    console.print(
        f"[bold]{cfg.model}[/] ({run.module.num_params() / 1e6:.2f}M params, V={run.vocab_size}) · "
        f"method [bold]{_method(cfg)}[/] · lr {cfg.optim.lr:g} · {cfg.steps} steps of "
        f"{cfg.data.batch_size}x{cfg.data.seq_len} tokens · {cfg.precision} · data {cfg.data.corpus}"
    )
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[tps]} tok/s"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    ema: float | None = None

    def on_step(out: dict[str, Any]) -> None:
        nonlocal ema
        loss = out.get("train_loss")
        if isinstance(loss, float) and math.isfinite(loss):
            ema = loss if ema is None else 0.9 * ema + 0.1 * loss
        progress.update(
            task,
            completed=run.step,
            loss=f"{ema:.3f}" if ema is not None else "-",
            tps=f"{out.get('tokens_per_s', 0.0):,.0f}",
        )

    def on_report(row: dict[str, Any]) -> None:
        record(row)
        if row.get("diverged"):
            progress.console.print(f"[red]diverged[/] at step {row['diverged_step']}: {row['diverged_cause']}")
            return
        progress.console.print(
            f"step {row['step']:>6} · val {row['val_loss']:.4f} · train {row.get('train_loss', float('nan')):.4f}"
            f" · {row['tokens_per_s']:,.0f} tok/s"
        )

    with progress:
        task = progress.add_task("training", total=cfg.steps, loss="-", tps="-")
        return run.run(on_report, on_step)


def _method(cfg: Any) -> str:
    return str(cfg.loss.method)


def _print_summary(console: Any, run: Any, summary: dict[str, Any]) -> None:
    if summary.get("diverged"):
        console.print(
            f"[red]diverged[/] at step {summary['diverged_step']} ({summary['diverged_cause']}); "
            f"val_loss reported as ln V = {summary['val_loss']:.4f}"
        )
        return
    console.print(
        f"[green]done[/]: val_loss {summary['val_loss']:.4f} (uniform ln V = {run.uniform_loss:.4f}) · "
        f"{summary['tokens']:,} tokens · {summary['elapsed_s']:.1f}s"
    )
