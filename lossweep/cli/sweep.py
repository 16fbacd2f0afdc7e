"""``lossweep sweep run``: a sweep without the service, with a live table of its trials.

The sweep runs in a child process (``python -m search_spaces.run.job``, the same driver the service
submits as a Ray Job); this command follows the sweep directory's files while it runs. Running the
same command again with the same ``--out`` resumes an interrupted sweep.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from search_spaces.run.sweep_dir import TrialStatus

if TYPE_CHECKING:
    from rich.table import Table

    from search_spaces.spec.sweep_spec import SweepSpec

sweep_app = typer.Typer(help="Run and analyse sweeps without the service.", no_args_is_help=True)

_STYLE = {
    TrialStatus.RUNNING: "cyan",
    TrialStatus.TERMINATED: "green",
    TrialStatus.STOPPED: "yellow",
    TrialStatus.DIVERGED: "red",
    TrialStatus.ERROR: "bold red",
}


def register(app: typer.Typer) -> None:
    """Adds the ``sweep`` command group to the ``lossweep`` app."""
    app.add_typer(sweep_app, name="sweep")


def load_spec_arg(spec_arg: str, sets: list[str] | None) -> SweepSpec:
    """A spec from a YAML/JSON file or a preset name, with ``--set`` overrides; ``typer.BadParameter``
    naming the problem otherwise."""
    from pydantic import ValidationError

    from search_spaces.run.results import load_spec
    from search_spaces.spec.presets import apply_overrides, get_preset, list_presets, parse_set_args

    try:
        if Path(spec_arg).is_file() or "://" in spec_arg:
            spec = load_spec(spec_arg)
        elif spec_arg in list_presets():
            spec = get_preset(spec_arg)
        else:
            raise typer.BadParameter(
                f"{spec_arg!r} is neither a spec file nor a preset; presets: {', '.join(list_presets())}",
                param_hint="SPEC",
            )
    except ValidationError as exc:
        raise typer.BadParameter(_errors(exc), param_hint="SPEC") from None
    try:  # applied even when empty: the result is validated as a spec to run (a preset may need --set)
        spec = apply_overrides(spec, parse_set_args(sets or []))
    except ValidationError as exc:
        raise typer.BadParameter(_errors(exc), param_hint="--set") from None
    except (KeyError, ValueError) as exc:
        raise typer.BadParameter(str(exc).strip('"'), param_hint="--set") from None
    return spec


def _errors(exc: Any) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors())


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def trials_table(sweep_dir: str, title: str) -> Table:
    from rich.table import Table

    from search_spaces.run.results import read_progress, read_trials
    from search_spaces.spec.sweep_spec import SIZE_PARAM
    from trainables.losses.registry import COEFFICIENTS

    progress = read_progress(sweep_dir) or {}
    counts = progress.get("counts") or {}
    summary = ", ".join(f"{k.lower()} {v}" for k, v in counts.items() if v)
    eta = progress.get("eta_s")
    caption = f"{summary}  elapsed {_fmt(progress.get('elapsed_s'), 3)} s" + (f", ~{eta:.0f} s left" if eta else "")
    table = Table(title=title, caption=caption)
    try:
        rows = read_trials(sweep_dir).to_dict("records")
    except FileNotFoundError:
        rows = []
    sized = any(isinstance(row.get(SIZE_PARAM), str) for row in rows)  # the model size is an axis
    columns = ("trial", "method", *(("size",) if sized else ()), "lr", "coefficients", "seed", "status", "step",
               "best val CE", "wall s")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="right" if col in ("lr", "seed", "step", "best val CE", "wall s") else "left")
    for row in rows:
        coeffs = " ".join(f"{c}={_fmt(row.get(c), 3)}" for c in COEFFICIENTS if _fmt(row.get(c)) != "-")
        status = str(row.get("status"))
        if status == "DIVERGED" and row.get("diverged_step") is not None:
            status = f"DIVERGED@{row['diverged_step']}"
        style = _STYLE.get(str(row.get("status")), "")
        size = (str(row.get(SIZE_PARAM)),) if sized else ()
        table.add_row(
            str(row.get("trial_id")), str(row.get("method")), *size, _fmt(row.get("lr"), 3), coeffs,
            _fmt(row.get("seed")),
            f"[{style}]{status}[/]" if style else status, _fmt(row.get("steps")), _fmt(row.get("best_val_loss")),
            _fmt(row.get("wall_time_s"), 3),
        )  # fmt: skip
    return table


def summary(sweep_dir: str) -> dict[str, Any]:
    """The final summary: sweep dir, status, counts per status, the best configuration (progress.json's
    record, ``sweep_dir.best_record``)."""
    from search_spaces.run.results import read_progress

    progress = read_progress(sweep_dir) or {}
    best = progress.get("best")
    return {
        "sweep_dir": sweep_dir,
        "sweep_id": progress.get("sweep_id"),
        "status": progress.get("status"),
        "counts": progress.get("counts"),
        "total_trials": progress.get("total_trials"),
        "best": best,
        "tokens": progress.get("tokens"),
        "elapsed_s": progress.get("elapsed_s"),
    }


@sweep_app.command("run")
def run_command(
    spec_arg: Annotated[str, typer.Argument(metavar="SPEC", help="A SweepSpec YAML/JSON file or a preset name.")],
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE", help="Override a spec field (dotted key, YAML value); repeatable."),
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out",
            help="Sweep directory (path or s3:// URI). Default: ./sweeps/<name>-<time>. An existing one is resumed.",
        ),
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="Ray address. Default: RAY_ADDRESS, else the local cluster.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the final summary as JSON (last stdout line).")
    ] = False,
    refresh: Annotated[float, typer.Option(help="Seconds between table refreshes.")] = 1.0,
) -> None:
    """Run a sweep on Ray (without the service), showing a live table of its trials."""
    from rich.console import Console
    from rich.live import Live

    from search_spaces.run import storage
    from search_spaces.run.sweep_dir import write_spec_document

    spec = load_spec_arg(spec_arg, sets)
    from search_spaces.run.tracking import TrackerNotInstalledError, check_clients

    try:
        check_clients(spec)  # before a cluster or a sweep dir is made for a driver that would refuse it
    except TrackerNotInstalledError as exc:
        raise typer.BadParameter(str(exc), param_hint="SPEC") from None
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    sweep_dir = storage.normalize(out or Path("sweeps") / f"{spec.name}-{stamp}")
    storage.makedirs(sweep_dir)
    spec_file = write_spec_document(sweep_dir, spec.model_dump(mode="json"))

    env = dict(os.environ)
    if address is None and not env.get("RAY_ADDRESS"):
        from lossweep.local_cluster import ensure_local_cluster, ray_env

        cluster = ensure_local_cluster()
        env.update(ray_env(cluster))
    elif address is not None:
        env["RAY_ADDRESS"] = address
    console = Console(stderr=as_json)
    console.print(f"sweep [bold]{spec.name}[/]: {spec.num_trials()} trials -> {sweep_dir}")
    log_path = Path(sweep_dir) / "driver.log" if not storage.is_uri(sweep_dir) else Path(f"{spec.name}-{stamp}.log")
    cmd = [sys.executable, "-m", "search_spaces.run.job", spec_file, sweep_dir]
    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # a SIGTERM stops the driver too, as Ctrl-C does

    signal.signal(signal.SIGTERM, _terminate)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        title = f"{spec.name} ({spec.search.algorithm}, {spec.num_trials()} trials)"
        try:
            with Live(trials_table(sweep_dir, title), console=console, refresh_per_second=4,
                      transient=False) as live:  # fmt: skip
                while proc.poll() is None:
                    time.sleep(refresh)
                    live.update(trials_table(sweep_dir, title))
                live.update(trials_table(sweep_dir, title))
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            console.print(f"interrupted; resume with: lossweep sweep run {spec_arg} --out {sweep_dir}")
            raise typer.Exit(130) from None
    result = summary(sweep_dir)
    if proc.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-20:] if log_path.exists() else []
        console.print(f"[red]the sweep driver exited with status {proc.returncode}[/]; log: {log_path}")
        console.print("\n".join(tail), markup=False)
    elif not as_json:
        best = result.get("best")
        if best:
            console.print(f"best: {best['method']} val CE {best['val_loss']:.4f} with {best['params']} "
                          f"(trial {best['trial_id']})")  # fmt: skip
        console.print(f"analyse: lossweep sweep analyze {sweep_dir}")
    if as_json:
        print(json.dumps({**result, "exit_code": proc.returncode}, default=str), flush=True)
    if proc.returncode != 0:
        raise typer.Exit(1)
