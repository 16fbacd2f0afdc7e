"""One training run on a real local Ray cluster: DDP equivalence, reduced reports, divergence as a
result, and requests the cluster can never hold."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from trainables.train.config import DataConfig, OptimConfig, TrainConfig
from trainables.train.trainer import InsufficientResourcesError, Resources, fit

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def data_cache(train_data_cache: str) -> str:
    return train_data_cache


def _config(cache: str, **overrides: Any) -> TrainConfig:
    fields: dict[str, Any] = {
        "model": "tiny",
        "data": DataConfig(seq_len=32, batch_size=4, eval_tokens=256, test_tokens=256, cache_dir=cache),
        "optim": OptimConfig(lr=3e-3, warmup_steps=2),
        "steps": 50,
        "eval_interval": 5,
        "seed": 3,
    }
    fields.update(overrides)
    return TrainConfig(**fields)


def _reports(progress: Path) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, progress.read_text().splitlines()) if r["event"] == "report"]


def _all_finite(row: dict[str, Any]) -> bool:
    return all(math.isfinite(v) for v in row.values() if isinstance(v, float))


def test_two_ray_workers_follow_one_process(train_connected: Any, data_cache: str, tmp_path: Path) -> None:
    from trainables.train.engine import TrainingRun

    config = _config(data_cache)
    reference = TrainingRun(config)
    expected: list[dict[str, Any]] = []
    reference.run(expected.append)

    progress = tmp_path / "progress.jsonl"
    final = fit(
        config,
        Resources(workers=2),
        name="ddp-equivalence",
        storage_path=tmp_path / "runs",
        manifest_dir=tmp_path / "manifest",
        progress_file=progress,
    )
    got = _reports(progress)
    assert [r["step"] for r in got] == [r["step"] for r in expected] == list(range(5, 51, 5))
    for mine, ref in zip(got, expected, strict=True):
        # Each rank trains on its own half of the batch; equal curves mean gradients *and* reported
        # losses were averaged over ranks (rank 0's half alone would differ).
        assert mine["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-4), mine["step"]
        assert mine["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-4), mine["step"]
        assert mine["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-3), mine["step"]
        # The max over each rank's half of the first validation batch is the max over all of it.
        assert mine["logits_absmax"] == pytest.approx(ref["logits_absmax"], rel=1e-4), mine["step"]
        assert mine["tokens"] == ref["tokens"] and mine["diverged"] == 0
    assert final["step"] == 50 and final["diverged"] == 0 and final["diverged_step"] == -1
    assert final["val_loss"] == pytest.approx(expected[-1]["val_loss"], rel=1e-4)
    assert final["vocab_size"] == reference.vocab_size
    assert final["checkpoint_path"] and Path(final["checkpoint_path"], "state.pt").is_file()
    manifest = json.loads((tmp_path / "manifest" / "manifest.json").read_text())
    assert manifest["config_hash"] == config.config_hash()
    assert manifest["world_size"] == 2 and manifest["vocab_size"] == reference.vocab_size
    assert manifest["versions"]["ray"].startswith("2.") and manifest["seed"] == 3


def test_huge_lr_diverges_as_a_result(train_connected: Any, data_cache: str, tmp_path: Path) -> None:
    """Through Tune, as a sweep runs it: the trial ends TERMINATED (not ERROR) with diverged=1, and
    no NaN reaches Tune's results."""
    from ray import tune

    from search_spaces.run.report_forwarding import fit_reporting_to_tune

    config = _config(data_cache, optim=OptimConfig(lr=1e4, warmup_steps=0), steps=40, checkpoint_interval=5)
    progress = tmp_path / "progress.jsonl"
    runs = tmp_path / "runs"

    def trial(_: dict[str, Any]) -> None:  # a nested function travels to the trial driver by value
        fit_reporting_to_tune(lambda callbacks: fit(config, Resources(workers=1), name="diverges",
                                                    storage_path=runs, progress_file=progress, callbacks=callbacks))

    grid = tune.Tuner(
        tune.with_resources(trial, {"CPU": 0, "trial_driver": 1}),
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", num_samples=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="diverges", verbose=0),
    ).fit()
    assert grid.num_errors == 0 and grid.num_terminated == 1
    history = grid[0].metrics_dataframe
    assert history["diverged"].iloc[-1] == 1 and (history["diverged"].iloc[:-1] == 0).all()
    numeric = history.select_dtypes("number")
    assert not numeric.isna().any().any(), numeric.columns[numeric.isna().any()].tolist()
    final = grid[0].metrics
    assert 1 <= final["diverged_step"] <= 40
    assert final["diverged_cause"] in ("nonfinite_loss", "nonfinite_grad")  # only these stop by default
    assert final["val_loss"] == pytest.approx(math.log(final["vocab_size"]))  # the sentinel L0 = ln V
    rows = _reports(progress)
    assert rows[-1]["diverged"] == 1 and all(_all_finite(r) for r in rows)
    assert not rows[-1]["checkpoint"]  # a diverged state is not worth resuming


def test_unsatisfiable_request_fails_at_once(train_connected: Any, data_cache: str, tmp_path: Path) -> None:
    config = _config(data_cache, data=DataConfig(seq_len=32, batch_size=6, cache_dir=data_cache))
    with pytest.raises(InsufficientResourcesError) as error:
        fit(config, Resources(workers=3), name="too-big", storage_path=tmp_path / "runs")
    message = str(error.value)
    assert "3 worker(s) of {CPU: 1}" in message and "CPU: 2" in message
    gpu = _config(data_cache, use_gpu=True)
    with pytest.raises(InsufficientResourcesError, match="GPU: 1"):
        fit(gpu, Resources(workers=1, gpus_per_worker=1), name="no-gpu", storage_path=tmp_path / "runs")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_lean_and_plain_trainers_give_the_same_losses_and_mark_the_start(
    train_connected: Any, data_cache: str, tmp_path: Path
) -> None:
    from ray.util.state import list_actors

    from trainables.train.startup import MARKS

    def dataset_managers() -> int:
        return len(list_actors(filters=[("class_name", "=", "DatasetManager")], limit=10_000))

    config = _config(data_cache, steps=10)
    finals, reports = {}, {}
    for lean in (False, True):
        before = dataset_managers()
        progress = tmp_path / f"progress-{lean}.jsonl"
        finals[lean] = fit(
            config,
            Resources(workers=1),
            name=f"lean-{lean}",
            storage_path=tmp_path / "runs",
            manifest_dir=tmp_path / f"manifest-{lean}",
            progress_file=progress,
            lean=lean,
        )
        reports[lean] = [(r["step"], r["train_loss"], r["val_loss"]) for r in _reports(progress)]
        # Ray Train's dataset manager is started for every run unless the run is lean.
        assert dataset_managers() - before == (0 if lean else 1)
    assert reports[True] == reports[False]  # same seed, same losses, bit for bit
    marks = json.loads((tmp_path / "manifest-True" / "manifest.json").read_text())["startup"]
    present = [name for name in MARKS if name in marks and name != "worker_process_started"]
    assert present == [name for name in MARKS if name != "worker_process_started"]
    assert [marks[name] for name in present] == sorted(marks[name] for name in present)
    assert marks["startup_s"] == pytest.approx(marks["first_step"] - marks["fit_called"])
    assert marks["end_s"] == pytest.approx(marks["fit_returned"] - marks["last_report"])
    assert finals[True]["startup"]["startup_s"] == marks["startup_s"]


def test_ray_workers_with_micro_batches_follow_one_pass(train_connected: Any, data_cache: str, tmp_path: Path) -> None:
    """Gradient accumulation through Ray Train's DDP: 2 workers x 2 passes of 1 sequence per step follow
    the 1-process, 1-pass run; the manifest records the setting."""
    import dataclasses

    from trainables.train.engine import TrainingRun

    config = _config(data_cache, steps=10)
    expected: list[dict[str, Any]] = []
    TrainingRun(config).run(expected.append)
    accumulated = dataclasses.replace(config, data=dataclasses.replace(config.data, micro_batch=1))
    progress = tmp_path / "progress.jsonl"
    fit(accumulated, Resources(workers=2), name="ddp-accumulation", storage_path=tmp_path / "runs",
        manifest_dir=tmp_path / "manifest", progress_file=progress)  # fmt: skip
    got = _reports(progress)
    assert [r["step"] for r in got] == [r["step"] for r in expected] == [5, 10]
    for mine, ref in zip(got, expected, strict=True):
        assert mine["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-4), mine["step"]
        assert mine["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-4), mine["step"]
        assert mine["tokens"] == ref["tokens"]
    manifest = json.loads((tmp_path / "manifest" / "manifest.json").read_text())
    assert manifest["config"]["data"]["micro_batch"] == 1 and manifest["world_size"] == 2
