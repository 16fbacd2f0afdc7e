"""Number and label formatting shared by the HTML and Markdown reports and the ``analyze`` CLI."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from search_spaces.analysis.sizes import size_label
from search_spaces.run.sweep_dir import FINAL_TRIAL_STATUSES, TrialStatus
from search_spaces.spec.sweep_spec import SIZE_PARAM
from trainables.losses.registry import method_label

#: The columns of the trials table, in the HTML and the Markdown report alike.
TRIAL_HEADERS: tuple[str, ...] = (
    "trial",
    "method",
    "lr",
    "coefficients",
    "seed",
    "status",
    "final val CE",
    "best val CE",
    "test CE ± SE",
    "best step",
    "steps",
    "tokens",
    "wall time",
    "diverged at (cause) / above L0",
)


def method_name(method: str) -> str:
    """Human name of a method (the loss registry's labels); combinations joined with ``+``."""
    return method_label(str(method))


def family_name(row: Mapping[str, Any]) -> str:
    """A table row's method, after its model size where the size is an axis of the sweep."""
    size = row.get(SIZE_PARAM)
    return size_label(size, method_name(row["method"])) if size else method_name(row["method"])


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def fmt_lr(value: Any) -> str:
    if value is None:
        return "–"
    return f"{float(value):.3g}"


def fmt_tokens(value: Any) -> str:
    if value is None:
        return "–"
    v = float(value)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= size:
            return f"{v / size:.3g}{unit}"
    return f"{v:.0f}"


def seed_speedup_text(entry: Mapping[str, Any]) -> str:
    """``1.60x ± 0.57 (2 of 3 seeds)`` for a method of ``convergence_speedup``; ``–`` with fewer than
    two paired seeds (the single-trial figure says it all then)."""
    per_seed = entry.get("per_seed") or []
    if len(per_seed) < 2:
        return "–"
    reached, mean, std = entry.get("seeds_reached", 0), entry.get("speedup_mean"), entry.get("speedup_std")
    if mean is None:
        return f"not reached on any of {len(per_seed)} seeds"
    spread = f" ± {std:.2f}" if std is not None else ""
    return f"{mean:.2f}x{spread} ({reached} of {len(per_seed)} seeds)"


def duration(seconds: Any) -> str:
    if seconds is None:
        return "–"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60)} min"


def test_ce_text(trial: Mapping[str, Any]) -> str:
    """A trial's test CE with its standard error over windows (``2.1597 ± 0.0086``); "–" without one."""
    ce, se = trial.get("test_ce"), trial.get("test_ce_se")
    if ce is None:
        return "–"
    return f"{ce:.4f}" if se is None else f"{ce:.4f} ± {se:.4f}"


def stop_text(trial: Mapping[str, Any]) -> str:
    """A trial's early end and its recorded excursion above L0 + margin (a flag, never a stop):
    ``"50 (nonfinite_loss)"``, ``"above L0 at step 50"``, or both; empty when neither happened."""
    parts = []
    if trial.get("status") == TrialStatus.DIVERGED:
        parts.append(f"{trial.get('diverged_step')} ({trial.get('diverged_cause')})")
    above = trial.get("above_l0_step")
    if above is not None and not (isinstance(above, float) and math.isnan(above)) and int(above) >= 0:
        parts.append(f"above L0 at step {int(above)}")
    return "; ".join(parts)


def coefficients_text(params: Mapping[str, Any]) -> str:
    items = {k: v for k, v in params.items() if k != "lr"}
    if not items:
        return "no coefficients"
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, int | float) else f"{k} {v}" for k, v in items.items())


def status_line(data: Mapping[str, Any]) -> str:
    s = data["sweep"]
    counts = s["counts"]
    done = sum(counts.get(status, 0) for status in FINAL_TRIAL_STATUSES)
    total = s.get("total_trials") or s["trials"]
    return f"{done} of {total} trials done"


def resources_text(resources: Mapping[str, Any] | None) -> str:
    """``2 workers x (1 CPU, 0 GPU)`` plus anything else the spec recorded."""
    if not resources:
        return "not recorded"
    rest = dict(resources)
    parts = []
    if {"workers", "cpus_per_worker", "gpus_per_worker"} & set(rest):
        workers = rest.pop("workers", 1)
        cpus = rest.pop("cpus_per_worker", None)
        gpus = rest.pop("gpus_per_worker", None)
        inner = ", ".join(
            x for x in (f"{cpus:g} CPU" if cpus is not None else "", f"{gpus:g} GPU" if gpus else "") if x
        )
        parts.append(f"{workers} worker{'s' if workers != 1 else ''}" + (f" x ({inner})" if inner else ""))
    if "max_concurrent_trials" in rest:
        parts.append(f"{rest.pop('max_concurrent_trials')} trials at once")
    parts += [f"{k} {v}" for k, v in rest.items()]
    return ", ".join(parts)


def single_lr_summary(families: list[Mapping[str, Any]]) -> list[str]:
    """One sentence per method whose configurations were each run at fewer than two learning rates."""
    counts: dict[str, int] = {}
    for f in families:
        if f["K"] < 2 and f["lrs"] is None:
            counts[f["method"]] = counts.get(f["method"], 0) + 1
    return [
        f"{method_name(m)}: {n} configuration{'s' if n != 1 else ''} with fewer than two finished learning rates each "
        "(no LRS; see the trial table)"
        for m, n in counts.items()
    ]


def fenced(text: str, lang: str = "") -> list[str]:
    """``text`` as a Markdown code block whose fence is longer than any run of backticks in it, so no line
    of the text (a user's description holding a fence) can close the block early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + lang, text.rstrip(), fence]


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table as lines (pipes and newlines in cells escaped), followed by a blank line."""

    def cell(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return [*out, ""]


def interval_text(mean: Any, low: Any, high: Any, digits: int = 4, *, signed: bool = False) -> str:
    """``2.1043 [2.0811, 2.1275]``; the mean alone when there is no interval (one seed)."""
    if mean is None:
        return "–"
    spec = f"+.{digits}f" if signed else f".{digits}f"
    if low is None or high is None:
        return format(mean, spec)
    return f"{format(mean, spec)} [{format(low, spec)}, {format(high, spec)}]"


def p_text(p: Any) -> str:
    return "–" if p is None else f"{p:.2g}" if p >= 1e-3 else "< 0.001"


def power_text(comparison: Mapping[str, Any]) -> str:
    """``resolves ≥ 0.041; ~12 seeds for this Δ`` (the sweep's power beside a comparison)."""
    mde, needed = comparison.get("mde"), comparison.get("seeds_needed")
    if mde is None:
        return "needs ≥ 2 seeds"
    text = f"resolves ≥ {mde:.3g}"
    if comparison.get("verdict") == "not resolved":
        # A table column that also holds None (beyond the search) carries the counts as floats.
        known = needed is not None and math.isfinite(float(needed))
        text += f"; {int(needed)} seeds for this Δ" if known else "; this Δ needs > 10000 seeds"
    return text


def speedup_targets_rows(speedup: Mapping[str, Any]) -> list[list[str]]:
    """One row per method and target of the speed-up at several targets, with censored seeds said."""
    rows = []
    for m in speedup.get("methods") or []:
        for target in m.get("targets") or []:
            if not target["n"]:
                continue
            value = interval_text(target["mean"], target["low"], target["high"], 2)
            bound = f" (upper bound: {target['censored']} censored at the budget)" if target["censored"] else ""
            rows.append([method_name(m["method"]), f"{target['fraction']:.0%}", str(target["n"]), value + bound])
    return rows


SIZE_HEADERS = ("size", "method", "seeds", "LRS [95% CI]", "paper LRS", "best LR", "best loss", "paper best LR",
                "paper best loss")  # fmt: skip

#: What :func:`size_curve_table` shows.
SIZE_CURVES_CAPTION = (
    "Per learning rate: our mean measured loss over seeds, with the paper's test loss at the same size and "
    "learning rate in brackets. Different data, vocabularies and token budgets set the two levels apart: "
    "compare the shape of each row, not its level."
)


def size_rows(section: Mapping[str, Any]) -> list[list[str]]:
    """The rows of a sweep-over-sizes table (``size_comparison``), in :data:`SIZE_HEADERS` order."""
    return [
        [
            str(r["model"]) + (f" ({r['paper_size']})" if r["paper_size"] else ""),
            method_name(r["method"]),
            str(r["n_seeds"]),
            interval_text(r["lrs"], r["lrs_low"], r["lrs_high"], 3),
            fmt(r["paper_lrs"], 3),
            fmt_lr(r["best_lr"]) if r["best_lr"] is not None else "–",
            fmt(r["best_loss"], 3),
            fmt_lr(r["paper_best_lr"]) if r["paper_best_lr"] is not None else "–",
            fmt(r["paper_best_loss"], 3),
        ]
        for r in section["rows"]
    ]


def size_curve_table(section: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the per-learning-rate losses of a sweep over sizes: per size and method, our mean
    measured loss at each learning rate with the paper's at the same size and rate in brackets."""
    lrs = sorted({float(x) for r in section["rows"] for x in r["lrs_grid"]})
    rows = []
    for r in section["rows"]:
        ours = dict(zip(map(float, r["lrs_grid"]), r["losses"], strict=True))
        paper = dict(zip(map(float, r["lrs_grid"]), r["paper_losses"] or [None] * len(r["lrs_grid"]), strict=True))
        cells = [
            fmt(ours.get(lr), 3) + (f" ({fmt(paper[lr], 3)})" if paper.get(lr) is not None else "") for lr in lrs
        ]
        rows.append([str(r["model"]), method_name(r["method"]), *cells])
    return ["size", "method", *[f"lr {fmt_lr(lr)}" for lr in lrs]], rows
