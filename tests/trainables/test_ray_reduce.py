"""Cross-rank reduction of report rows over a real gloo group, and the driver-side resource checks.

No Ray here: ``combine_ranks`` (the one rule by which ranks combine what they report),
``finite_row`` and ``check_resources`` are plain functions; the Ray runs that use them are in
``test_ray_trainer.py``.
"""

from __future__ import annotations

import math

import pytest

from tests.trainables.gloo import run_ranks
from trainables.train.config import DataConfig, TrainConfig
from trainables.train.loop import finite_row
from trainables.train.reduce import IdentityReducer, NanSafeMaxReducer, TorchDistReducer, combine_ranks
from trainables.train.trainer import InsufficientResourcesError, Resources, check_resources, validate


def _rank_values(rank: int) -> tuple[dict[str, float], float, dict[str, float]]:
    # What two ranks of one run may hold: means over their own valid tokens (rank 0: 30 of them,
    # rank 1: 10), a value equal on both ranks, and extremes / times.
    means = {"train_loss": 2.0 + rank, "mu_norm": 7.0, "logits_mean_absmax": 4.0 if rank == 0 else 8.0}
    maxima = {"logits_absmax": 5.0 + 10 * rank, "elapsed_s": 1.0 + rank, "nan_somewhere": math.nan if rank else 1.0}
    return means, (30.0 if rank == 0 else 10.0), maxima


def _rank_row(rank: int, world_size: int) -> dict[str, float]:
    reducer = NanSafeMaxReducer(TorchDistReducer())
    means, weight, maxima = _rank_values(rank)
    if rank == 1:  # keys in a different order on each rank: reduction must still line them up
        means = dict(reversed(list(means.items())))
    return combine_ranks(reducer, means, weight=weight, maxima=maxima)


def test_ranks_combine_by_valid_token_weights() -> None:
    rows = run_ranks(_rank_row)
    assert all(math.isnan(r.pop("nan_somewhere")) for r in rows)  # a NaN on any rank is not hidden by max
    assert rows[0] == rows[1]  # every rank holds the same row, so rank 0's is the run's
    row = rows[0]
    # the mean over all 40 valid tokens, as one process would compute it (not the plain 2.5)
    assert row["train_loss"] == pytest.approx((30 * 2.0 + 10 * 3.0) / 40)
    assert row["logits_mean_absmax"] == pytest.approx((30 * 4.0 + 10 * 8.0) / 40)
    assert row["mu_norm"] == pytest.approx(7.0)  # equal on every rank: unchanged
    assert row["logits_absmax"] == 15.0 and row["elapsed_s"] == 2.0


def test_single_rank_and_the_reported_row() -> None:
    one = combine_ranks(NanSafeMaxReducer(IdentityReducer()), {"val_loss": 3.0}, weight=12.0, maxima={"t": 1.5})
    assert one == {"val_loss": 3.0, "t": 1.5}
    # no valid token anywhere: plain means, never a division by zero
    assert combine_ranks(IdentityReducer(), {"val_loss": 3.0}, weight=0.0) == {"val_loss": 3.0}
    assert finite_row({"val_loss": 3.0, "x": math.inf, "y": None, "step": 5, "flag": True, "cause": ""}) == {
        "val_loss": 3.0,
        "step": 5,
        "flag": 1,
        "cause": "",
    }


def test_resources_validation() -> None:
    with pytest.raises(ValueError, match="workers"):
        Resources(workers=0)
    with pytest.raises(ValueError, match="cpus_per_worker"):
        Resources(cpus_per_worker=-1)
    config = TrainConfig(data=DataConfig(batch_size=6))
    with pytest.raises(ValueError, match="divisible by workers=4"):
        validate(config, Resources(workers=4))
    with pytest.raises(ValueError, match="use_gpu"):
        validate(config, Resources(workers=2, gpus_per_worker=1))
    with pytest.raises(ValueError, match="multiple of eval_interval"):
        validate(TrainConfig(eval_interval=10, checkpoint_interval=15), Resources())


def test_check_resources_names_what_was_asked_and_what_exists() -> None:
    two_cpus = [{"CPU": 2.0, "memory": 1e9}]
    check_resources(Resources(workers=2), nodes=two_cpus)
    check_resources(Resources(workers=4, cpus_per_worker=0.5), nodes=two_cpus)
    with pytest.raises(InsufficientResourcesError) as too_many:
        check_resources(Resources(workers=3), nodes=two_cpus)
    message = str(too_many.value)
    assert "3 worker(s) of {CPU: 1}" in message and "{CPU: 2}" in message and "at most 2" in message
    with pytest.raises(InsufficientResourcesError, match="no node of the cluster is that large"):
        check_resources(Resources(workers=1, gpus_per_worker=1), nodes=two_cpus)
    # Two 1-CPU nodes hold two 1-CPU workers but not one 2-CPU worker.
    check_resources(Resources(workers=2), nodes=[{"CPU": 1.0}, {"CPU": 1.0}])
    with pytest.raises(InsufficientResourcesError):
        check_resources(Resources(workers=1, cpus_per_worker=2), nodes=[{"CPU": 1.0}, {"CPU": 1.0}])
