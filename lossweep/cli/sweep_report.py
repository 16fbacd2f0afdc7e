"""``lossweep sweep report`` and ``lossweep sweep analyze``: what a sweep directory says.

Both commands attach to the ``sweep`` group defined in :mod:`lossweep.cli.sweep`; heavy imports
(pandas, matplotlib) happen inside the commands so that ``lossweep --help`` stays instant.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from lossweep.cli.sweep import sweep_app
from search_spaces.run.sweep_dir import PROGRESS_FILE, TRIALS_FILE
from search_spaces.run.sweep_dir import REPORT_FORMATS as _FORMATS


def _parse_formats(values: list[str] | None) -> tuple[str, ...]:
    if not values:
        return _FORMATS
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip().lower()
            if not part:
                continue
            if part == "markdown":
                part = "md"
            if part not in _FORMATS:
                raise typer.BadParameter(
                    f"unknown format {part!r}; choose from {', '.join(_FORMATS)}", param_hint="--format"
                )
            if part not in out:
                out.append(part)
    return tuple(out)


def _check_dir(sweep_dir: str) -> str:
    from search_spaces.run.storage import is_uri

    if not is_uri(sweep_dir):
        from pathlib import Path

        path = Path(sweep_dir)
        if not path.is_dir():
            raise typer.BadParameter(f"{sweep_dir} is not a directory", param_hint="DIR")
        if not (path / TRIALS_FILE).is_file() and not (path / PROGRESS_FILE).is_file():
            raise typer.BadParameter(
                f"{sweep_dir} holds no trials.parquet or progress.json: not a sweep directory (see docs/sweep-dir.md)",
                param_hint="DIR",
            )
    return sweep_dir


@sweep_app.command("report")
def report_command(
    sweep_dir: Annotated[str, typer.Argument(metavar="DIR", help="Sweep directory (local path or s3:// URI).")],
    fmt: Annotated[
        list[str] | None,
        typer.Option("--format", "-f", help="json, md or html; repeat or comma-separate (default: all three)."),
    ] = None,
) -> None:
    """Write report.json / report.md / report.html into the sweep directory and print their paths."""
    formats = _parse_formats(fmt)
    sweep_dir = _check_dir(sweep_dir)
    from search_spaces.reports.render import render

    written = render(sweep_dir, formats=formats)
    for path in written.values():
        typer.echo(path)


@sweep_app.command("analyze")
def analyze_command(
    sweep_dir: Annotated[str, typer.Argument(metavar="DIR", help="Sweep directory (local path or s3:// URI).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole analysis as one JSON object.")] = False,
) -> None:
    """Print the analysis tables: best configurations, LR sensitivity, λ robustness, deltas, speed-up."""
    sweep_dir = _check_dir(sweep_dir)
    from search_spaces.analysis import sensitivity as analysis
    from search_spaces.run import results

    try:
        trials = results.read_trials(sweep_dir)
    except FileNotFoundError:
        message = f"{sweep_dir} has no trials.parquet yet (no trial has reported)"
        raise typer.BadParameter(message, param_hint="DIR") from None
    try:
        metrics = results.read_metrics(sweep_dir)
    except FileNotFoundError:
        metrics = None  # the speed-up section says what it misses
    out = analysis.analyze(trials, metrics)
    if as_json:
        typer.echo(json.dumps(out, allow_nan=False, ensure_ascii=False))
        return
    _print_tables(out)


def _print_tables(out: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from search_spaces.analysis.trial_frame import format_coefficients
    from search_spaces.reports.report_text import (
        SIZE_HEADERS,
        coefficients_text,
        family_name,
        fmt,
        fmt_lr,
        fmt_tokens,
        interval_text,
        method_name,
        p_text,
        power_text,
        seed_speedup_text,
        single_lr_summary,
        size_rows,
        speedup_targets_rows,
    )

    # Pipes get 80 columns by default, too narrow for these tables; a real terminal keeps its width.
    probe = Console()
    console = Console(width=probe.width if probe.is_terminal else 140)
    counts = ", ".join(f"{k.lower()} {v}" for k, v in out["counts"].items() if v) or "no trials"
    console.print(f"[bold]Trials:[/bold] {counts}")

    best = out["best"]
    rules = out["statistics"]
    table = Table(title="Best configuration", caption=escape(f"rule: {best['rule']}"), caption_justify="left")
    for column in ("", "val CE", "step", "lr", "coefficients", "seed", "status", "trial"):
        table.add_column(column, justify="right" if column in ("val CE", "step", "lr", "seed") else "left")
    rows = ([("overall", best["overall"])] if best["overall"] else []) + list(best["per_method"].items())
    for name, r in rows:
        table.add_row(
            f"[bold]overall: {method_name(r['method'])}[/bold]" if name == "overall" else method_name(name),
            fmt(r["val_loss"]),
            str(r["step"]),
            fmt_lr(r["params"].get("lr")),
            coefficients_text(r["params"]),
            str(r["seed"]),
            r["status"],
            r["trial_id"],
        )
    console.print(table)

    lrs = out["lr_sensitivity"]
    table = Table(title="Learning-rate sensitivity", caption=escape(lrs["rule"]), caption_justify="left")
    for column in ("method", "coefficients", "K", "LRS [95% CI]", "diverged", "largest stable LR", "note"):
        table.add_column(column, justify="right" if column in ("K", "LRS [95% CI]", "diverged") else "left")
    for f in [f for f in lrs["families"] if f["K"] >= 2 or f["lrs"] is not None]:
        table.add_row(
            family_name(f),
            format_coefficients(f["coefficients"]),
            str(f["K"]),
            interval_text(f["lrs"], f["lrs_low"], f["lrs_high"], 3),
            str(f["diverged"]),
            fmt_lr(f["largest_stable_lr"]) if f["largest_stable_lr"] is not None else "none",
            escape(f["note"]),
        )
    console.print(table)
    if out.get("sizes"):
        sizes = out["sizes"]
        table = Table(title="Across model sizes", caption=escape(f"{sizes['rule']}. {sizes['paper_note']}."),
                      caption_justify="left")  # fmt: skip
        for column in SIZE_HEADERS:
            table.add_column(column, justify="left" if column in ("size", "method") else "right")
        for row in size_rows(sizes):
            table.add_row(*map(escape, row))
        console.print(table)
    for line in single_lr_summary(lrs["families"]):
        console.print(f"[dim]{escape(line)}[/dim]")
    if out["paper"]:
        console.print(
            f"[dim]The sweep used the paper's LR grid; published LRS ({escape(out['paper']['citation'])}):[/dim]"
        )
        for size, values in out["paper"]["no_tying"].items():
            console.print(f"  {size}: " + ", ".join(f"{method_name(m)} {v:.3f}" for m, v in values.items()))

    per_method: dict[str, int] = {}
    for r in out["lambda_robustness"]:
        per_method[family_name(r)] = per_method.get(family_name(r), 0) + 1
    swept = [r for r in out["lambda_robustness"] if per_method[family_name(r)] > 1]
    if swept:
        table = Table(title="λ robustness (LRS per coefficient value)")
        for column in ("method", "coefficient", "value", "K", "LRS", "diverged", "largest stable LR"):
            table.add_column(column)
        for r in swept:
            table.add_row(
                family_name(r),
                r["coefficient"],
                f"{r['value']:g}",
                str(r["K"]),
                fmt(r["lrs"], 3),
                str(r["diverged"]),
                fmt_lr(r["largest_stable_lr"]) if r["largest_stable_lr"] is not None else "none",
            )
        console.print(table)

    confirm = out["confirm"]
    if confirm["configs"]:
        table = Table(title="Confirmed on fresh seeds", caption=escape(f"{confirm['rule']}. {rules['verdict']}."),
                      caption_justify="left")  # fmt: skip
        for column in ("configuration", "n", f"{out['measured']} [95% CI]", "Δ vs baseline [95% CI]", "p", "verdict",
                       "power"):  # fmt: skip
            table.add_column(column)
        for c in confirm["configs"]:
            d = c["comparison"] or {}
            table.add_row(
                escape(c["label"]), str(c["n"]), interval_text(c["mean"], c["low"], c["high"]),
                interval_text(d.get("mean"), d.get("low"), d.get("high"), signed=True) if d else "reference",
                p_text(d.get("p")) if d else "", d.get("verdict", ""), power_text(d) if d else "",
            )  # fmt: skip
        console.print(table)

    deltas = out["paired_deltas"]
    if deltas["rows"]:
        caption = f"{deltas['rule']}. {rules['verdict']}. {rules['power']}."
        table = Table(title="Paired against baseline", caption=escape(caption), caption_justify="left")
        for column in ("method", "lr", "n", f"Δ {out['measured']} [95% CI]", "p", "verdict", "power"):
            table.add_column(column, justify="left" if column in ("method", "verdict", "power") else "right")
        for d in deltas["rows"]:
            table.add_row(
                escape(d["label"]), fmt_lr(d["lr"]), str(d["n_pairs"]),
                interval_text(d["delta_mean"], d["delta_low"], d["delta_high"], signed=True), p_text(d["p"]),
                d["verdict"], power_text(d),
            )  # fmt: skip
        console.print(table)

    speed = out["speedup"]
    if speed["baseline"]:
        b = speed["baseline"]
        table = Table(
            title="Convergence speed-up against baseline",
            caption=escape(
                f"{speed['rule']}; baseline {b['trial_id']} reaches {fmt(b['target_val_loss'])} "
                f"after {fmt_tokens(b['tokens'])} tokens"
            ),
            caption_justify="left",
        )
        for column in ("method", "trial", "tokens", "speed-up", "over seeds"):
            table.add_column(column)
        for m in speed["methods"]:
            table.add_row(
                method_name(m["method"]),
                m["trial_id"],
                fmt_tokens(m["tokens"]) if m["reached"] else "not reached",
                f"{m['speedup']:.2f}x" if m["speedup"] is not None else "–",
                seed_speedup_text(m),
            )
        console.print(table)
    targets = speedup_targets_rows(speed)
    if targets:
        table = Table(title="Speed-up at several targets", caption=escape(speed["targets_rule"]),
                      caption_justify="left")  # fmt: skip
        for column in ("method", "target (% of budget)", "seed pairs", "speed-up [95% CI]"):
            table.add_column(column)
        for row in targets:
            table.add_row(*(escape(c) for c in row))
        console.print(table)
    for line in best["missing"] + speed["missing"]:
        console.print(f"[yellow]missing:[/yellow] {escape(line)}")


def register(app: typer.Typer) -> None:
    """``report`` and ``analyze`` live in the sweep group (imported above); nothing to add at top level."""
