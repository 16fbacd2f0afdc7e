"""The OEC paper's published reference numbers and the reading of its run table, apart from the
statistics of a sweep: the citations, the learning-rate and λ grids, the published LR sensitivity per
model size, and ``read_paper_runs`` / ``paper_lr_sensitivity`` over the reference CSV
(``reference/oec_loss_overview_all.csv`` beside this module, shipped with the package; its source and
run-name format are in ``reference/README.md``)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from search_spaces.analysis.trial_frame import float_key, lr_sensitivity_value, method_order, uniform_loss

OEC_CITATION = (
    "Stollenwerk, Lokrantz, Hertzberg (2026): Output Embedding Centering, arXiv 2601.02031; "
    "LR sensitivity after Wortsman et al. (2023), arXiv 2309.14322"
)
SIMREG_CITATION = "Sun, Wang, Zeng, et al. (2026): SimReg, arXiv 2605.08809"
PAPER_LR_GRID: tuple[float, ...] = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
PAPER_LAMBDA_GRID: tuple[float, ...] = (1e-7, 1e-4, 1e-1, 1e2)
PAPER_VOCAB_SIZE = 50304
#: The paper's published run table (no weight tying), shipped with the package.
PAPER_RUNS_CSV = Path(__file__).with_name("reference") / "oec_loss_overview_all.csv"
# LR sensitivity, no weight tying, λ = 1e-4 (OEC paper, table of LR sensitivity).
PAPER_LRS: dict[str, dict[str, float]] = {
    "16M": {"baseline": 0.306, "z_loss": 0.054, "mu_loss": 0.031, "mu_centering": 0.028},
    "57M": {"baseline": 0.508, "z_loss": 0.235, "mu_loss": 0.031, "mu_centering": 0.041},
    "221M": {"baseline": 0.412, "z_loss": 0.109, "mu_loss": 0.056, "mu_centering": 0.061},
}
# With weight tying (v2 of the paper), 221M.
PAPER_LRS_TIED_221M: dict[str, float] = {
    "baseline": 0.330,
    "softcap": 0.055,
    "z_loss": 0.109,
    "mu_loss": 0.058,
    "mu_centering": 0.066,
}
# Final test loss per learning rate, no weight tying, 221M, λ = 1e-4.
PAPER_LOSS_221M: dict[str, tuple[float, ...]] = {
    "baseline": (3.090, 3.050, 3.050, 3.076, 3.153, 3.305, 5.099),
    "z_loss": (3.089, 3.050, 3.049, 3.069, 3.091, 3.173, 3.478),
    "mu_loss": (3.090, 3.052, 3.050, 3.075, 3.084, 3.140, 3.195),
    "mu_centering": (3.091, 3.051, 3.050, 3.073, 3.113, 3.127, 3.208),
}

_RUN_NAME = re.compile(
    r"^(?P<prefix>[^-]+)-(?P<size>\d+M)-.*-lr(?P<lr>\d+)-(?P<method>[a-z]+)-g(?P<coef>[0-9.e+-]+)-s(?P<seed>\d+)$"
)
_PAPER_METHODS = {"baseline": "baseline", "zloss": "z_loss", "muloss": "mu_loss", "mucentering": "mu_centering"}


def read_paper_runs(path: str | Path = PAPER_RUNS_CSV) -> pd.DataFrame:
    """The OEC paper's published runs (``oec_loss_overview_all.csv``) as ``size, method, coefficient,
    lr, seed, test_loss`` (run-name format: ``reference/README.md``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"paper reference table not found: {path}")
    raw = pd.read_csv(path)
    if "name" not in raw.columns or "test_loss" not in raw.columns:
        raise ValueError(f"{path}: expected columns 'name' and 'test_loss'")
    rows = []
    for name, loss in zip(raw["name"], raw["test_loss"], strict=True):
        match = _RUN_NAME.match(str(name))
        if match is None:
            raise ValueError(f"{path}: run name {name!r} does not follow the documented format")
        method = _PAPER_METHODS.get(match["method"])
        if method is None:
            raise ValueError(f"{path}: unknown method {match['method']!r} in run {name!r}")
        rows.append(
            {
                "size": match["size"],
                "method": method,
                "coefficient": float(match["coef"]),
                "lr": int(match["lr"]) * 1e-4,
                "seed": int(match["seed"]),
                "test_loss": float(loss),
            }
        )
    return pd.DataFrame(rows)


def paper_lr_sensitivity(
    path: str | Path = PAPER_RUNS_CSV, *, vocab_size: int = PAPER_VOCAB_SIZE, lrs: Iterable[float] | None = None
) -> pd.DataFrame:
    """LRS per model size, method and coefficient recomputed from the paper's published runs; ``lrs``: over
    those learning rates only (default: all seven of its grid).

    Columns ``size, method, coefficient, K, lrs`` (coefficient 0 for baseline and μ-centering).
    """
    runs = read_paper_runs(path)
    if lrs is not None:
        wanted = {float_key(x) for x in lrs}
        runs = runs[runs["lr"].map(float_key).isin(wanted)]
    l0 = uniform_loss(vocab_size)
    rows = []
    for (size, method, coef), group in runs.groupby(["size", "method", "coefficient"], sort=True):
        curve = group.groupby("lr")["test_loss"].mean()
        rows.append(
            {
                "size": size,
                "method": method,
                "coefficient": float(coef),
                "K": len(curve),
                "lrs": lr_sensitivity_value(list(curve.values), l0),
            }
        )
    rows.sort(key=lambda r: (int(r["size"].rstrip("M")), method_order(r["method"]), r["coefficient"]))
    return pd.DataFrame(rows, columns=["size", "method", "coefficient", "K", "lrs"])


def paper_lrs_by_size(
    path: str | Path = PAPER_RUNS_CSV, *, coefficient: float = 1e-4, lrs: Iterable[float] | None = None
) -> dict[str, dict[str, float]]:
    """``{size: {method: LRS}}`` at the paper's default λ (baseline and μ-centering have none), sizes from
    the smallest; ``lrs`` as in :func:`paper_lr_sensitivity`."""
    table = paper_lr_sensitivity(path, lrs=lrs)
    out: dict[str, dict[str, float]] = {}
    for rec in table.to_dict("records"):
        if rec["method"] in ("z_loss", "mu_loss") and not math.isclose(rec["coefficient"], coefficient):
            continue
        out.setdefault(rec["size"], {})[rec["method"]] = float(rec["lrs"])
    return out


def uses_paper_lr_grid(lrs: Iterable[float]) -> bool:
    """True when the sweep's learning rates are exactly the paper's grid (so its LRS compare)."""
    mine = sorted({float_key(x) for x in lrs})
    return len(mine) == len(PAPER_LR_GRID) and all(
        math.isclose(a, b, rel_tol=1e-6) for a, b in zip(mine, PAPER_LR_GRID, strict=True)
    )


def paper_comparison(table: pd.DataFrame) -> dict[str, Any] | None:
    """The paper's published LRS beside ours, when the sweep used the paper's LR grid."""
    if table.empty:
        return None
    grids = [row for row in table.to_dict("records") if row["K"] >= 2]
    if not grids or not any(uses_paper_lr_grid(row["lrs_grid"]) for row in grids):
        return None
    return {
        "citation": OEC_CITATION,
        "note": (
            "published LRS of the OEC paper (no weight tying, lambda = 1e-4, 13.1B FineWeb tokens, V = 50304); "
            "weight tying, 221M, for soft-capping"
        ),
        "no_tying": PAPER_LRS,
        "tied_221M": PAPER_LRS_TIED_221M,
    }
