"""The training engine: μ-centering, paired initialisation, divergence, checkpoint round trip."""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import pytest
import torch

from trainables.data.tokens import Dataset, load_dataset
from trainables.losses.config import LossConfig
from trainables.train.config import DataConfig, DivergenceConfig, OptimConfig, TrainConfig
from trainables.train.engine import TrainingRun

TIMING = {"tokens_per_s", "elapsed_s", "eval_s"}


@pytest.fixture(scope="module")
def data_cfg(tmp_path_factory: pytest.TempPathFactory) -> DataConfig:
    cache = tmp_path_factory.mktemp("token-cache")
    return DataConfig(seq_len=32, batch_size=8, eval_tokens=256, test_tokens=256, cache_dir=str(cache))


@pytest.fixture(scope="module")
def dataset(data_cfg: DataConfig) -> Dataset:
    return load_dataset(data_cfg)  # read the corpus once for the module


def _config(data: DataConfig, method: str = "baseline", **kw: object) -> TrainConfig:
    params = {"steps": 6, "eval_interval": 3, "optim": OptimConfig(lr=3e-3, warmup_steps=2)}
    params.update(kw)
    return TrainConfig(model="tiny", data=data, loss=LossConfig.from_method(method, {}), **params)  # type: ignore[arg-type]


def test_mu_centering_zeroes_the_column_mean_after_a_step(data_cfg: DataConfig, dataset: Dataset) -> None:
    run = TrainingRun(dataset=dataset, config=_config(data_cfg, "mu_centering", optim=OptimConfig(lr=0.05)))
    before = run.module.w_out.detach().clone()
    out = run.train_step()
    assert out["diverged"] == 0
    w = run.module.w_out.detach()
    assert not torch.equal(w, before)
    assert w.mean(dim=0).abs().max().item() < 1e-6
    plain = TrainingRun(dataset=dataset, config=_config(data_cfg, "baseline", optim=OptimConfig(lr=0.05)))
    plain.train_step()
    assert plain.module.w_out.detach().mean(dim=0).abs().max().item() > 1e-4  # it is centering that did it


def test_same_seed_same_init_and_batches_for_every_method(data_cfg: DataConfig, dataset: Dataset) -> None:
    runs = [
        TrainingRun(dataset=dataset, config=_config(data_cfg, m))
        for m in ("baseline", "z_loss", "mu_loss", "softcap", "simreg")
    ]
    ref = runs[0].module.state_dict()
    for run in runs[1:]:
        for name, tensor in run.module.state_dict().items():
            assert torch.equal(tensor, ref[name]), name
        for step in (0, 3):
            assert torch.equal(run.sampler.batch(step)[0], runs[0].sampler.batch(step)[0])
    other_seed = TrainingRun(dataset=dataset, config=_config(data_cfg, seed=1))
    assert not torch.equal(other_seed.module.w_out, runs[0].module.w_out)


def test_reports_carry_the_sweep_dir_metrics(data_cfg: DataConfig, dataset: Dataset) -> None:
    rows: list[dict] = []
    final = TrainingRun(dataset=dataset, config=_config(data_cfg, "z_loss")).run(rows.append)
    assert [r["step"] for r in rows] == [3, 6] and final is rows[-1]
    for key in (
        "step",
        "tokens",
        "lr",
        "val_loss",
        "train_loss",
        "total_loss",
        "term_z_loss",
        "grad_norm",
        "tokens_per_s",
        "elapsed_s",
        "diverged",
        "diverged_step",
        "diverged_cause",
    ):
        assert key in final, key
    assert final["tokens"] == 6 * 8 * 32
    assert final["diverged"] == 0 and final["diverged_step"] == -1 and final["diverged_cause"] == ""
    assert final["val_loss"] < math.log(257)


def test_huge_learning_rate_ends_cleanly_as_diverged(data_cfg: DataConfig, dataset: Dataset) -> None:
    rows: list[dict] = []
    cfg = _config(data_cfg, steps=30, eval_interval=10, optim=OptimConfig(lr=1e3))
    run = TrainingRun(cfg, dataset=dataset)
    final = run.run(rows.append)  # no exception
    assert rows[-1] is final and final["diverged"] == 1
    assert 1 <= final["diverged_step"] < 30
    assert final["diverged_cause"] in ("nonfinite_loss", "nonfinite_grad")  # only non-finite values stop by default
    assert final["val_loss"] == pytest.approx(math.log(run.vocab_size))
    assert all(v is None or not isinstance(v, float) or math.isfinite(v) for v in final.values())
    assert all(torch.isfinite(p).all() for p in run.module.parameters())  # the bad step was not applied
    with pytest.raises(RuntimeError, match="diverged"):
        run.train_step()


def test_above_l0_is_a_recorded_flag_not_a_stop(data_cfg: DataConfig, dataset: Dataset) -> None:
    # a margin of -100 nats puts every evaluation "above L0 + margin": the run still trains to the end
    no_warmup = OptimConfig(lr=3e-3, warmup_steps=0)
    cfg = _config(data_cfg, steps=6, eval_interval=2, optim=no_warmup, divergence=DivergenceConfig(val_margin=-100.0))
    rows: list[dict] = []
    final = TrainingRun(cfg, dataset=dataset).run(rows.append)
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert final["diverged"] == 0 and final["diverged_cause"] == ""
    assert all(r["above_l0_step"] == 2 for r in rows)  # the first such evaluation, kept
    assert final["l0"] == pytest.approx(math.log(257))
    assert final["val_loss"] < math.log(257)  # the real loss, not a sentinel


def test_sustained_condition_ends_the_run_when_configured(data_cfg: DataConfig, dataset: Dataset) -> None:
    div = DivergenceConfig(val_margin=-100.0, sustained_evals=2)
    cfg = _config(data_cfg, steps=10, eval_interval=2, optim=OptimConfig(lr=3e-3, warmup_steps=0), divergence=div)
    rows: list[dict] = []
    final = TrainingRun(cfg, dataset=dataset).run(rows.append)
    assert [r["step"] for r in rows] == [2, 4]
    assert final["diverged"] == 1 and final["diverged_step"] == 4
    assert final["diverged_cause"] == "val_above_l0_sustained"
    assert final["val_loss"] == pytest.approx(math.log(257))  # counted as L0


def test_measured_initial_loss_as_l0(data_cfg: DataConfig, dataset: Dataset) -> None:
    cfg = _config(data_cfg, steps=2, eval_interval=2, divergence=DivergenceConfig(l0="initial"))
    initial = TrainingRun(cfg, dataset=dataset).evaluate()["val_loss"]
    final = TrainingRun(cfg, dataset=dataset).run(lambda row: None)
    assert final["l0"] == pytest.approx(initial)
    assert final["l0"] != pytest.approx(math.log(257), abs=1e-3)  # an initialised model is not uniform


def test_state_dict_round_trip_resumes_identically(data_cfg: DataConfig, dataset: Dataset) -> None:
    cfg = _config(data_cfg, "simreg+mu_centering")
    straight_rows: list[dict] = []
    straight = TrainingRun(cfg, dataset=dataset)
    straight.run(straight_rows.append)

    first = TrainingRun(cfg, dataset=dataset)
    for _ in range(3):  # what run() does up to the first report, then one step into the second window
        first.train_step()
    first.report()
    first.train_step()
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = TrainingRun(cfg, dataset=dataset)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    resumed_rows: list[dict] = []
    resumed.run(resumed_rows.append)

    for name, tensor in straight.module.state_dict().items():
        assert torch.equal(tensor, resumed.module.state_dict()[name]), name
    a, b = straight_rows[-1], resumed_rows[-1]
    assert {k: v for k, v in a.items() if k not in TIMING} == {k: v for k, v in b.items() if k not in TIMING}


def test_world_size_needs_a_reducer(data_cfg: DataConfig, dataset: Dataset) -> None:
    with pytest.raises(ValueError, match="needs a reducer"):
        TrainingRun(dataset=dataset, config=_config(data_cfg), rank=0, world_size=2)


def test_manifest_records_the_run(data_cfg: DataConfig, dataset: Dataset, tmp_path: Path) -> None:
    import json

    from trainables.train.manifest import build_manifest, write_manifest

    cfg = _config(data_cfg, "mu_loss")
    run = TrainingRun(cfg, dataset=dataset)
    path = write_manifest(tmp_path / "m" / "manifest.json", build_manifest(cfg, corpus_hash=run.data.corpus_hash))
    m = json.loads(path.read_text())
    assert m["config_hash"] == cfg.config_hash() and m["corpus_hash"] == run.data.corpus_hash
    assert TrainConfig.from_dict(m["config"]) == cfg
    assert m["versions"]["torch"] == torch.__version__.split("+")[0] or m["versions"]["torch"] == torch.__version__
    assert m["versions"]["python"] and m["seed"] == 0


def test_fp32_mu_centering_does_not_change_training(data_cfg: DataConfig, dataset: Dataset) -> None:
    # In float32 with an untied head and no weight decay, μ-centering is an exact no-op for training:
    # the CE gradient of the head sums to zero over the vocabulary and softmax ignores a uniform shift
    # of the logits (docs/papers.md §3). Any effect it has in a sweep comes from a bf16 head, tying or other
    # terms; here baseline and μ-centering must agree to float rounding over a short low-LR run.
    rows: dict[str, list[dict]] = {"baseline": [], "mu_centering": []}
    runs = {}
    for method in rows:
        cfg = _config(data_cfg, method, steps=8, eval_interval=4, optim=OptimConfig(lr=1e-3, warmup_steps=2))
        runs[method] = TrainingRun(cfg, dataset=dataset)
        runs[method].run(rows[method].append)
    for a, b in zip(rows["baseline"], rows["mu_centering"], strict=True):
        assert a["step"] == b["step"]
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-5)
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-5)
    base, centred = runs["baseline"].module.state_dict(), runs["mu_centering"].module.state_dict()
    for name, tensor in base.items():
        if name != "lm_head.weight":  # the head differs by its column mean, by construction
            torch.testing.assert_close(centred[name], tensor, rtol=0, atol=1e-5, msg=name)
    head = base["lm_head.weight"]
    torch.testing.assert_close(centred["lm_head.weight"], head - head.mean(dim=0), rtol=0, atol=1e-5)


def test_tf32_is_the_configs_setting_for_every_entry_point(data_cfg: DataConfig, dataset: Dataset) -> None:
    # train-local, the Ray worker and sweep trials all build a TrainingRun: it sets the flags
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        for allow in (False, True, False):
            TrainingRun(_config(data_cfg, allow_tf32=allow), dataset=dataset)
            assert torch.backends.cuda.matmul.allow_tf32 is allow and torch.backends.cudnn.allow_tf32 is allow
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


class _StepWatchingReducer:
    """Two ranks that hold the same numbers, recording every host-side (float) reduction."""

    def __init__(self) -> None:
        self.host_reductions = 0

    def reduce(self, values: dict[str, float], op: str = "mean") -> dict[str, float]:
        self.host_reductions += 1
        return {k: float(v) * (2 if op == "sum" else 1) for k, v in values.items()}

    def sum_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor * 2


@pytest.mark.parametrize("method", ["baseline", "simreg"])
def test_ddp_loss_scale_stays_on_the_device(data_cfg: DataConfig, dataset: Dataset, method: str) -> None:
    """Deferred mode (what a GPU run uses): a DDP step with micro-batches reduces nothing on the host;
    the step's valid tokens (and SimReg's anchors) that weigh the loss are summed as a tensor."""
    reducer = _StepWatchingReducer()
    cfg = _config(dataclasses.replace(data_cfg, micro_batch=2), method)
    run = TrainingRun(cfg, dataset=dataset, rank=0, world_size=2, reducer=reducer, sync_each_step=False)
    before = reducer.host_reductions
    for _ in range(2):
        run.train_step()
    assert reducer.host_reductions == before  # nothing left the device for the loss scale
    row = run.report()  # the window's metrics come over here, in one reduction
    assert reducer.host_reductions > before and math.isfinite(row["train_loss"])
