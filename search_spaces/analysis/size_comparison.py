"""A sweep over several model sizes beside the OEC paper's runs at the same sizes: per size and method,
our LRS and best learning rate next to the paper's, recomputed from its published runs."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from search_spaces.analysis import paper_reference
from search_spaces.analysis.sizes import size_order
from search_spaces.analysis.trial_frame import float_key
from search_spaces.spec.sweep_spec import SIZE_PARAM

SIZE_RULE = (
    "Per size and method, the family of the learning-rate plot (the default coefficients where swept): our LRS "
    "with its 95% bootstrap interval over seeds, and our best learning rate (lowest mean measured loss over its "
    "seeds); beside it the paper's run at the same size (oec-16m ... oec-221m), or at the size a CPU-scaled shape "
    "(oec-16m-cpu ...) is scaled from, recomputed from its published test losses (lambda = 1e-4, no weight "
    "tying) over the same learning rates, with its best learning rate"
)

# A paper shape (oec-16m) or its CPU-scaled copy (oec-16m-cpu), which stands beside the shape it scales.
_PAPER_PRESET = re.compile(r"^oec-(\d+)m(?:-cpu)?$")


def paper_size_of(preset: str) -> str | None:
    """The paper's name of the size a model preset is or is scaled from (``oec-16m`` and ``oec-16m-cpu`` →
    ``16M``); None for other presets."""
    match = _PAPER_PRESET.match(preset)
    return f"{match[1]}M" if match else None


def _on_paper_grid(lrs: Sequence[float]) -> bool:
    return bool(lrs) and all(
        any(math.isclose(lr, p, rel_tol=1e-6) for p in paper_reference.PAPER_LR_GRID) for lr in lrs
    )


def _or_none(value: Any) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def _paper_curve(runs: pd.DataFrame, size: str, method: str, lrs: Sequence[float]) -> pd.Series:
    """The paper's mean test loss per learning rate (of ``lrs``) for one size and method, at lambda = 1e-4."""
    mine = runs[(runs["size"] == size) & (runs["method"] == method)]
    if method in ("z_loss", "mu_loss"):
        mine = mine[mine["coefficient"].map(lambda c: math.isclose(c, 1e-4))]
    keys = mine["lr"].map(float_key)  # the published table writes 0.03 as 0.030000000000000002
    mine = mine[keys.isin({float_key(x) for x in lrs})]
    return mine.groupby(keys[mine.index])["test_loss"].mean()


def size_comparison(primary: Sequence[Mapping[str, Any]], *, tied: bool = False) -> dict[str, Any] | None:
    """:data:`SIZE_RULE` as ``{"rule", "sizes", "rows", "paper_note"}`` from the LR plot's families
    (``sensitivity.primary_families``); None unless they span two or more sizes. ``tied``: the sweep's
    models tie the output head to the input embedding, whose published LRS the paper gives at 221M only.
    The paper's columns are empty where it has no run of that size and head, or where our learning rates
    are not points of its grid. ``paper_losses`` is its per-LR curve on our learning rates."""
    sizes = sorted({str(f[SIZE_PARAM]) for f in primary if f.get(SIZE_PARAM) is not None}, key=size_order)
    if len(sizes) < 2:
        return None
    lrs = sorted({float_key(x) for fam in primary for x in fam["lrs_grid"]})
    on_grid = _on_paper_grid(lrs)
    # An LRS needs two learning rates; the paper's best LR and its curve need one.
    paper_lrs = paper_reference.paper_lrs_by_size(lrs=lrs) if on_grid and len(lrs) >= 2 and not tied else {}
    runs = paper_reference.read_paper_runs() if on_grid and not tied else pd.DataFrame()
    rows: list[dict[str, Any]] = []
    for size in sizes:
        paper_size = paper_size_of(size)
        for fam in (f for f in primary if f.get(SIZE_PARAM) == size):
            cells = [c for c in fam["cells"] if c["n"]]
            best = min(cells, key=lambda c: c["mean"]) if cells else None
            curve = _paper_curve(runs, paper_size, fam["method"], fam["lrs_grid"]) if paper_size and len(runs) else None
            if tied:
                paper = paper_reference.PAPER_LRS_TIED_221M.get(fam["method"]) if paper_size == "221M" else None
            else:
                paper = (paper_lrs.get(paper_size) or {}).get(fam["method"]) if paper_size else None
            has_curve = curve is not None and len(curve) > 0
            rows.append(
                {
                    SIZE_PARAM: size,
                    "paper_size": paper_size,
                    "method": fam["method"],
                    "label": fam["label"],
                    "K": fam["K"],
                    "n_seeds": fam["n_seeds"],
                    "lrs": fam["lrs"],
                    "lrs_low": fam["lrs_low"],
                    "lrs_high": fam["lrs_high"],
                    "best_lr": best["lr"] if best else None,
                    "best_loss": best["mean"] if best else None,
                    "lrs_grid": list(fam["lrs_grid"]),
                    "losses": list(fam["losses"]),
                    "paper_lrs": paper,
                    "paper_best_lr": float(curve.idxmin()) if has_curve else None,
                    "paper_best_loss": float(curve.min()) if has_curve else None,
                    "paper_losses": [_or_none(curve.get(float_key(x))) for x in fam["lrs_grid"]] if has_curve else None,
                }
            )
    if not on_grid:
        note = (
            "the paper's columns are empty: this sweep's learning rates are not points of the paper's grid "
            f"({', '.join(f'{x:g}' for x in paper_reference.PAPER_LR_GRID)})"
        )
    elif tied:
        note = f"{paper_reference.OEC_CITATION}; with a tied head the paper publishes the LRS at 221M only"
    else:
        note = f"{paper_reference.OEC_CITATION}; test loss on FineWeb, V = 50304, 13.1B tokens per run, untied head"
    return {"rule": SIZE_RULE, "sizes": sizes, "tied": tied, "rows": rows, "paper_note": note}
