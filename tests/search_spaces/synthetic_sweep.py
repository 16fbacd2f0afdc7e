"""Synthetic sweep directories in the documented format (docs/sweep-dir.md), for analysis and report tests.

The values follow simple closed forms so tests can compute the expected analysis by hand; the files are
written with the sweep driver's own writers in ``search_spaces.run.results``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from search_spaces.run.results import TRIAL_COLUMNS
from search_spaces.run.sweep_dir import TRIAL_STATUSES

TRIAL_NAMES = tuple(name for name, _ in TRIAL_COLUMNS)
VOCAB = 256
TOKENS_PER_STEP = 1024
STEPS = 100
EVAL_EVERY = 20
PAPER_GRID = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)


def trial(
    trial_id: str,
    method: str,
    lr: float,
    final: float,
    *,
    seed: int = 0,
    status: str = "TERMINATED",
    best: float | None = None,
    steps: int = STEPS,
    vocab_size: int = VOCAB,
    diverged_step: int = -1,
    **coefficients: float,
) -> dict[str, Any]:
    """One trials.parquet row; a DIVERGED trial gets the finite sentinel ``ln V`` as final loss."""
    l0 = math.log(vocab_size)
    if status == "DIVERGED":
        final = l0
        diverged_step = steps if diverged_step < 0 else diverged_step
    row: dict[str, Any] = {name: None for name in TRIAL_NAMES}
    row.update(
        trial_id=trial_id,
        method=method,
        lr=lr,
        seed=seed,
        status=status,
        final_val_loss=final,
        best_val_loss=final if best is None else best,
        best_step=steps,
        steps=steps,
        tokens=steps * TOKENS_PER_STEP,
        wall_time_s=steps * 0.05,
        diverged_step=diverged_step,
        diverged_cause="nonfinite_loss" if status == "DIVERGED" else "",
        vocab_size=vocab_size,
        config_hash=f"h-{trial_id}",
    )
    for name, value in coefficients.items():
        if name not in TRIAL_NAMES:
            raise KeyError(f"unknown coefficient column {name}")
        row[name] = value
    return row


def curve(row: Mapping[str, Any], *, every: int = EVAL_EVERY) -> list[dict[str, Any]]:
    """metrics.parquet rows of one trial: an exponential approach to its final validation CE."""
    l0 = math.log(row["vocab_size"])
    final = row["final_val_loss"]
    out = []
    diverged_at = row["diverged_step"] if row["status"] == "DIVERGED" else None
    last = row["steps"]
    for step in range(every, last + 1, every):
        frac = step / last
        val = final + (l0 - final) * 0.5 * (1.0 - frac) ** 2
        is_div = diverged_at is not None and step >= diverged_at
        mu = 0.1 + 20.0 * row["lr"] * frac * (0.0 if row["method"] == "mu_centering" else 1.0)
        out.append(
            {
                "trial_id": row["trial_id"],
                "step": step,
                "tokens": step * TOKENS_PER_STEP,
                "lr": row["lr"],
                "val_loss": l0 if is_div else val,
                "train_loss": (l0 if is_div else val) - 0.01,
                "total_loss": (l0 if is_div else val),
                "logits_mean": -mu * 0.5,
                "logits_std": 1.0 + frac,
                "logits_absmax": 5.0 + 10.0 * mu,
                "log_z_mean": 0.0 if row["method"] == "z_loss" else 2.0 * mu,
                "log_z_sq_mean": (2.0 * mu) ** 2,
                "mu_norm": 0.0 if row["method"] == "mu_centering" else mu,
                "emb_anisotropy": 0.1,
                "grad_norm": 1.0,
                "tokens_per_s": 2000.0,
                "elapsed_s": step * 0.05,
                "diverged": int(is_div),
                "diverged_step": diverged_at if is_div else -1,
                "diverged_cause": "nonfinite_loss" if is_div else "",
            }
        )
    return out


def write_sweep(
    directory: Path,
    trials: Sequence[Mapping[str, Any]],
    *,
    metrics: Iterable[Mapping[str, Any]] | None = None,
    status: str = "SUCCEEDED",
    name: str = "synthetic",
    spec: Mapping[str, Any] | None = None,
    total_trials: int | None = None,
) -> Path:
    """Writes trials.parquet, metrics.parquet, progress.json, spec.yaml and manifest.json with the
    sweep driver's own writers (``search_spaces.run.results``, ``search_spaces.run.sweep_dir``)."""
    from search_spaces.run import results
    from search_spaces.run.sweep_dir import write_spec_document
    from search_spaces.spec.sweep_spec import SweepSpec

    directory.mkdir(parents=True, exist_ok=True)
    sweep_dir = str(directory)
    results.write_trials(sweep_dir, trials)
    rows = list(metrics) if metrics is not None else [r for t in trials for r in curve(t)]
    results.write_metrics(sweep_dir, rows)
    counts = {s: 0 for s in TRIAL_STATUSES}
    for t in trials:
        counts[t["status"]] += 1
    finite = [t for t in trials if t["status"] in ("TERMINATED", "STOPPED", "RUNNING")]
    best = min(finite, key=lambda t: t["best_val_loss"]) if finite else None
    progress = {
        "sweep_id": directory.name,
        "name": name,
        "status": status,
        "counts": counts,
        "total_trials": total_trials if total_trials is not None else len(trials),
        "best": None
        if best is None
        else {
            "trial_id": best["trial_id"],
            "method": best["method"],
            "val_loss": best["best_val_loss"],
            "params": {"lr": best["lr"]},
        },
        "tokens": sum(int(t["tokens"] or 0) for t in trials),
        "elapsed_s": 123.4,
        "eta_s": None if status != "RUNNING" else 60.0,
        "updated_at": "2026-11-24T07:00:00Z",
    }
    results.write_progress(sweep_dir, progress)
    methods = sorted({t["method"] for t in trials}) or ["baseline"]
    spec_doc = (
        dict(spec)
        if spec is not None
        else {
            "name": name,
            "model": {"preset": "tiny"},
            "data": {"corpus": "stdlib", "tokenizer": "bytes", "seq_len": 32, "batch_size": 32},
            "budget": {"steps": STEPS, "eval_interval": EVAL_EVERY},
            "methods": methods,
            "lr": sorted({t["lr"] for t in trials}) or [1e-3],
            "search": {"algorithm": "grid"},
            "seeds": sorted({t["seed"] for t in trials}) or [0],
            "resources": {"workers": 1, "cpus_per_worker": 1.0, "gpus_per_worker": 0.0},
            "max_concurrent_trials": 2,
        }
    )
    write_spec_document(sweep_dir, SweepSpec.model_validate(spec_doc).model_dump(mode="json"))
    manifest = {
        "lossweep": "0.1.0",
        "torch": "2.13.0",
        "ray": "2.60.0",
        "optuna": "5.0.0",
        "python": "3.11.9",
        "git_sha": "0123456789abcdef",
        "corpus_hash": "c0ffee",
        "spec_hash": "5pec",
        "started_at": "2026-11-24T06:58:00Z",
    }
    results.write_json(sweep_dir, results.MANIFEST_FILE, manifest)
    return directory


def paper_grid_trials(seeds: Sequence[int] = (0, 1)) -> list[dict[str, Any]]:
    """The `oec-lr-sensitivity` + `oec-lambda-robustness` + a SimReg grid, with closed-form losses.

    Loss at learning rate lr: ``2 + 0.1 * (log10(lr) + 2.5)^2 + offset(method) + 0.01 * seed``; the baseline
    diverges at 0.3, z-loss with lambda = 100 at every lr >= 0.01.
    """
    offsets = {"baseline": 0.0, "z_loss": -0.01, "mu_loss": -0.02, "mu_centering": -0.03, "softcap": -0.015}
    coefs = {"z_loss": {"z_loss_weight": 1e-4}, "mu_loss": {"mu_loss_weight": 1e-4}, "softcap": {"softcap_cap": 30.0}}
    rows: list[dict[str, Any]] = []

    def loss(lr: float, method: str, seed: int) -> float:
        return 2.0 + 0.1 * (math.log10(lr) + 2.5) ** 2 + offsets[method] + 0.01 * seed

    for method in ("baseline", "z_loss", "mu_loss", "mu_centering", "softcap"):
        for lr in PAPER_GRID:
            for seed in seeds:
                diverged = method == "baseline" and lr == 3e-1
                rows.append(
                    trial(
                        f"{method}-{lr:g}-s{seed}",
                        method,
                        lr,
                        loss(lr, method, seed),
                        seed=seed,
                        status="DIVERGED" if diverged else "TERMINATED",
                        diverged_step=60 if diverged else -1,
                        **coefs.get(method, {}),
                    )
                )
    for method, column in (("z_loss", "z_loss_weight"), ("mu_loss", "mu_loss_weight")):
        for lam in (1e-7, 1e-1, 1e2):
            for lr in PAPER_GRID:
                diverged = method == "z_loss" and lam == 1e2 and lr >= 1e-2
                rows.append(
                    trial(
                        f"{method}-l{lam:g}-{lr:g}-s0",
                        method,
                        lr,
                        loss(lr, method, 0) + (0.05 if lam == 1e-7 else 0.0),
                        status="DIVERGED" if diverged else "TERMINATED",
                        diverged_step=40 if diverged else -1,
                        **{column: lam},
                    )
                )
    for w in (0.01, 0.1, 1.0):
        for tau in (0.05, 0.1, 0.5):
            final = 2.0 + 0.1 * (math.log10(w) + 1) ** 2 + 0.05 * (math.log10(tau) + 1) ** 2 - 0.04
            rows.append(
                trial(f"simreg-w{w:g}-t{tau:g}", "simreg", 3e-3, final, simreg_weight=w, simreg_temperature=tau)
            )
    return rows
