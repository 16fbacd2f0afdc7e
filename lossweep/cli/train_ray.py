"""``lossweep train``: one training run on Ray Train (DDP workers), on a local or remote cluster."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from lossweep.cli.train_options import SUMMARY_KEYS, FlagError, RunFlags, build_train_config, fail, with_run_flags


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the ``lossweep`` app."""
    app.command("train")(train)


@with_run_flags
def train(
    flags: RunFlags,
    workers: Annotated[int, typer.Option("--workers", help="DDP workers (Ray Train ranks).")] = 1,
    cpus_per_worker: Annotated[
        float, typer.Option("--cpus-per-worker", help="CPUs each worker holds (fractions pack several on a core).")
    ] = 1.0,
    gpus: Annotated[
        float, typer.Option("--gpus", help="GPUs per worker; > 0 trains on CUDA with NCCL (default: 1 with --gpu).")
    ] = 0.0,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster (GCS host:port, or 'auto'). Default: start or reuse a local cluster recorded in"
            " $LOSSWEEP_HOME (~/.lossweep).",
        ),
    ] = None,
    checkpoint_interval: Annotated[
        int,
        typer.Option(
            "--checkpoint-interval", help="Steps between checkpoints, a multiple of --eval-interval (0: at the end)."
        ),
    ] = 0,
    checkpoint_keep: Annotated[int, typer.Option("--checkpoint-keep", help="Checkpoints kept on storage.")] = 2,
    max_failures: Annotated[
        int, typer.Option("--max-failures", help="Worker-group restarts (from the last checkpoint) before giving up.")
    ] = 1,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Run name (default: train-<date>-<time>). A name whose run dir holds checkpoints of the same"
            " config resumes from the last one.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Folder for manifest.json, progress.jsonl and checkpoints (default: $LOSSWEEP_HOME/runs/NAME).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the final metrics as one JSON object on the last line of stdout.")
    ] = False,
) -> None:
    """Train one model on Ray Train with N DDP workers and report validation loss.

    Example: lossweep train --preset tiny --steps 200 --workers 2 --loss z_loss=1e-4
    """
    if not gpus >= 0:
        fail(f"--gpus: must be >= 0, got {gpus}")
    use_gpu = flags.gpu or gpus > 0
    if use_gpu and gpus <= 0:
        gpus = 1.0
    try:
        base = build_train_config(flags, use_gpu=use_gpu)
    except FlagError as exc:
        fail(str(exc))

    import dataclasses

    from trainables.train.trainer import Resources, validate

    try:
        config = dataclasses.replace(base, checkpoint_interval=checkpoint_interval, checkpoint_keep=checkpoint_keep)
        resources = Resources(
            workers=workers, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus if use_gpu else 0.0
        )
        validate(config, resources)
    except ValueError as exc:
        fail(_flag_message(str(exc)))
    if max_failures < -1:
        fail(f"--max-failures: must be >= -1 (-1 = unlimited), got {max_failures}")

    from rich.console import Console

    from lossweep.local_cluster import default_state_dir

    console = Console(stderr=True)
    run_name = name or time.strftime("train-%Y%m%d-%H%M%S")
    run_dir = (out or default_state_dir() / "runs" / run_name).expanduser().resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    progress_file = run_dir / "progress.jsonl"
    # A run dir that already holds this run's checkpoints resumes from them; its log keeps growing.
    log_offset = progress_file.stat().st_size if progress_file.exists() else 0

    _connect(address, console)
    from trainables.train.trainer import InsufficientResourcesError, fit

    console.print(
        f"[bold]{config.model}[/] · method [bold]{config.loss.method}[/] · lr {config.optim.lr:g} · {config.steps}"
        f" steps of {config.data.batch_size}x{config.data.seq_len} tokens · {workers} worker(s) x"
        f" {_shape(resources)} · run dir {run_dir}"
    )
    outcome: dict[str, Any] = {}
    started = time.perf_counter()

    def target() -> None:
        try:
            outcome["final"] = fit(
                config,
                resources,
                name=run_name,
                storage_path=run_dir / "checkpoints",
                max_failures=max_failures,
                manifest_dir=run_dir,
                progress_file=progress_file,
            )
        except BaseException as exc:  # reported below, in the main thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="lossweep-fit", daemon=True)
    thread.start()
    try:
        _follow(thread, progress_file, log_offset, config.steps, console, quiet=as_json)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: stopping the run")
        raise typer.Exit(code=130) from None

    error = outcome.get("error")
    if isinstance(error, InsufficientResourcesError):
        fail(str(error))
    if error is not None:
        console.print(f"[red]training failed[/]: {type(error).__name__}: {error}")
        raise typer.Exit(code=1)
    final = outcome["final"]
    summary = _summary(final, wall_s=time.perf_counter() - started)
    if as_json:
        print(json.dumps(summary, default=str))
    else:
        _print_summary(console, summary, run_dir, local_cluster=address is None)


def _connect(address: str | None, console: Any) -> None:
    from lossweep.local_cluster import ensure_local_cluster, init_driver

    cluster = None
    if address is None:
        with console.status("starting / finding the local Ray cluster", spinner="dots"):
            cluster = ensure_local_cluster()
        address = cluster.address
        how = "started" if cluster.started else "reusing"
        console.print(f"{how} local Ray cluster {cluster.address} · dashboard {cluster.dashboard_url}")
    try:
        init_driver(address, cluster)
    except ConnectionError as exc:
        fail(f"--address: cannot connect to Ray at {address}: {exc}")


def _follow(
    thread: threading.Thread, progress_file: Path, offset: int, steps: int, console: Any, *, quiet: bool
) -> None:
    """Shows the run's progress log (written by rank 0 from byte ``offset`` on) until the run ends."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("val {task.fields[val]}"),
        TextColumn("{task.fields[tps]} tok/s"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )
    with bar:
        task = bar.add_task("starting workers", total=steps, val="-", tps="-")
        while True:
            alive = thread.is_alive()
            offset, events = _read_new(progress_file, offset)
            for event in events:
                if quiet:
                    continue
                if event.get("event") == "started":
                    where = f"resumed from step {event['step']}" if event.get("resumed") else "training"
                    bar.update(task, description=where, completed=event.get("step", 0))
                    if event.get("resumed"):
                        bar.console.print(f"[yellow]workers restarted[/]: resuming from step {event['step']}")
                elif event.get("event") == "report":
                    if event.get("diverged"):
                        bar.console.print(
                            f"[red]diverged[/] at step {event.get('diverged_step')}: {event.get('diverged_cause')}"
                        )
                    val = event.get("val_loss")
                    bar.update(
                        task,
                        completed=event.get("step", 0),
                        val=f"{val:.4f}" if isinstance(val, float) and math.isfinite(val) else "-",
                        tps=f"{event.get('tokens_per_s', 0.0):,.0f}",
                    )
            if not alive:
                break
            thread.join(timeout=0.25)


def _read_new(path: Path, offset: int) -> tuple[int, list[dict[str, Any]]]:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except FileNotFoundError:
        return offset, []
    complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next read
    events = []
    for line in complete.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return offset + len(complete), events


def _summary(final: dict[str, Any], *, wall_s: float) -> dict[str, Any]:
    from trainables.train.startup import STARTUP_KEY

    out: dict[str, Any] = {"steps": final.get("step")}
    out.update({k: final.get(k) for k in SUMMARY_KEYS if k != "steps"})
    out.update({k: v for k, v in final.items() if k not in out and k not in ("step", STARTUP_KEY)})
    out["wall_s"] = round(wall_s, 3)
    # fit called -> first optimizer step done (trainables.train.startup); the marks are in the manifest.
    startup_s = final.get(STARTUP_KEY, {}).get("startup_s")
    out["startup_s"] = round(startup_s, 3) if startup_s is not None else None
    return out


def _print_summary(console: Any, summary: dict[str, Any], run_dir: Path, *, local_cluster: bool) -> None:
    if summary.get("diverged"):
        console.print(
            f"[red]diverged[/] at step {summary['diverged_step']} ({summary['diverged_cause']}); "
            f"val_loss reported as ln V = {summary['val_loss']:.4f}"
        )
    else:
        console.print(
            f"[green]done[/]: val_loss {summary['val_loss']:.4f} · {summary['tokens']:,} tokens ·"
            f" {summary['tokens_per_s']:,.0f} tok/s · start-up {summary['startup_s'] or 0:.1f}s ·"
            f" wall {summary['wall_s']:.1f}s"
        )
    console.print(f"manifest, progress log and checkpoints: {run_dir}")
    if local_cluster:
        console.print("the local Ray cluster keeps running for the next run; `lossweep cluster stop` ends it")


def _shape(resources: Any) -> str:
    parts = [f"{resources.cpus_per_worker:g} CPU"]
    if resources.gpus_per_worker:
        parts.append(f"{resources.gpus_per_worker:g} GPU")
    return " + ".join(parts)


_FIELD_FLAGS = {
    "Resources.workers": "--workers",
    "Resources.cpus_per_worker": "--cpus-per-worker",
    "Resources.gpus_per_worker": "--gpus",
    "data.batch_size": "--batch-size",
    "data.micro_batch": "--micro-batch",
    "checkpoint_interval": "--checkpoint-interval",
    "checkpoint_keep": "--checkpoint-keep",
    "config.use_gpu": "--gpu",
}


def _flag_message(message: str) -> str:
    """A config/resources error in terms of this command's flags."""
    for field, flag in _FIELD_FLAGS.items():
        if message.startswith(field) or f" {field}" in message:
            return f"{flag}: {message}"
    return message
