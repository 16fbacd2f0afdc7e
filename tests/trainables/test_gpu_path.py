"""The GPU path's choices, checked on CPU: fused AdamW selection, the compile switch's plumbing, the
host copy, MFU omitted on CPU, and the deferred (one sync per report) step bookkeeping that CUDA runs
use, against the per-step one."""

from __future__ import annotations

import math

import pytest
import torch

from search_spaces.spec.presets import get_preset
from search_spaces.spec.translate import train_config
from trainables.data.tokens import Dataset, load_dataset
from trainables.losses.config import LossConfig
from trainables.model.compile import compile_enabled, maybe_compile
from trainables.train.config import DataConfig, DivergenceConfig, OptimConfig, TrainConfig
from trainables.train.engine import TrainingRun
from trainables.train.manifest import build_manifest
from trainables.train.optim import adamw_implementation, build_adamw
from trainables.train.transfer import to_device

TIMING = {"tokens_per_s", "elapsed_s", "eval_s"}


@pytest.fixture(scope="module")
def data_cfg(tmp_path_factory: pytest.TempPathFactory) -> DataConfig:
    return DataConfig(
        seq_len=32, batch_size=8, eval_tokens=256, test_tokens=256, cache_dir=str(tmp_path_factory.mktemp("cache"))
    )


@pytest.fixture(scope="module")
def dataset(data_cfg: DataConfig) -> Dataset:
    return load_dataset(data_cfg)


def _config(data: DataConfig, method: str = "baseline", **kw: object) -> TrainConfig:
    params: dict[str, object] = {"steps": 6, "eval_interval": 3, "optim": OptimConfig(lr=3e-3, warmup_steps=2)}
    params.update(kw)
    return TrainConfig(model="tiny", data=data, loss=LossConfig.from_method(method, {}), **params)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- optimizer


def test_fused_adamw_is_chosen_on_cuda_only() -> None:
    assert adamw_implementation("cuda") == {"fused": True}
    assert adamw_implementation("cpu") == {}
    assert adamw_implementation("mps") == {}


def test_build_adamw_keeps_the_default_on_cpu_and_the_decay_groups() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = build_adamw(module, OptimConfig(lr=1e-3, weight_decay=0.1), torch.device("cpu"))
    assert not opt.defaults.get("fused")
    decay, no_decay = opt.param_groups
    assert [p.dim() for p in decay["params"]] == [2] and decay["weight_decay"] == 0.1
    assert all(p.dim() == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["eps"] == 1e-8


# --------------------------------------------------------------------------------------- compile


def test_compile_defaults_to_on_for_cuda_and_off_for_cpu() -> None:
    assert compile_enabled(None, "cuda") is True
    assert compile_enabled(None, "cpu") is False
    assert compile_enabled(True, "cpu") is True
    assert compile_enabled(False, "cuda") is False
    module = torch.nn.Linear(2, 2)
    assert maybe_compile(module, False) is module


def test_compile_setting_reaches_the_run_the_manifest_and_the_config_round_trip(
    data_cfg: DataConfig, dataset: Dataset
) -> None:
    auto = _config(data_cfg)
    assert auto.compile is None and TrainConfig.from_dict(auto.to_dict()) == auto
    run = TrainingRun(auto, dataset=dataset)
    assert run.compiled is False and run.model is run.module
    assert build_manifest(auto)["compile"] is False
    assert build_manifest(_config(data_cfg, use_gpu=True))["compile"] is True

    asked = _config(data_cfg, compile=True)
    compiled = TrainingRun(asked, dataset=dataset)  # compilation is lazy: nothing is compiled here
    assert compiled.compiled is True and isinstance(compiled.model, torch._dynamo.eval_frame.OptimizedModule)
    assert build_manifest(asked)["compile"] is True
    with pytest.raises(ValueError, match="compile"):
        TrainConfig(compile="yes")  # type: ignore[arg-type]


def test_sweep_spec_compile_reaches_each_trial() -> None:
    spec = get_preset("demo")
    assert spec.compile is None
    assert train_config(spec, {"lr": 1e-3}).compile is None
    off = spec.model_copy(update={"compile": False})
    assert train_config(off, {"lr": 1e-3}).compile is False


# ---------------------------------------------------------------------------------- host copies


def test_to_device_on_cpu_is_the_tensor() -> None:
    x = torch.arange(6).view(2, 3)
    y = to_device(x, torch.device("cpu"))
    assert torch.equal(x, y) and y.device.type == "cpu"


# ------------------------------------------------------------------------ deferred bookkeeping


def _rows(config: TrainConfig, dataset: Dataset, *, sync_each_step: bool) -> tuple[TrainingRun, list[dict]]:
    rows: list[dict] = []
    run = TrainingRun(config, dataset=dataset, sync_each_step=sync_each_step)
    run.run(rows.append)
    return run, rows


def _untimed(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIMING}


def test_cpu_runs_sync_each_step_by_default(data_cfg: DataConfig, dataset: Dataset) -> None:
    assert TrainingRun(_config(data_cfg), dataset=dataset).sync_each_step is True


@pytest.mark.parametrize("method", ["baseline", "simreg+mu_centering"])
def test_deferred_reports_equal_per_step_reports(data_cfg: DataConfig, dataset: Dataset, method: str) -> None:
    cfg = _config(data_cfg, method)
    each, each_rows = _rows(cfg, dataset, sync_each_step=True)
    deferred, deferred_rows = _rows(cfg, dataset, sync_each_step=False)
    assert [_untimed(r) for r in deferred_rows] == [_untimed(r) for r in each_rows]
    for name, tensor in each.module.state_dict().items():
        assert torch.equal(tensor, deferred.module.state_dict()[name]), name
    assert all(r["tokens_per_s"] > 0 for r in deferred_rows)
    assert not any(k in r for r in deferred_rows for k in ("mfu", "model_flops_per_s", "compile_s"))  # CPU


@pytest.mark.parametrize(
    ("overrides", "causes"),
    [
        ({"optim": OptimConfig(lr=1e3)}, {"nonfinite_loss", "nonfinite_grad"}),
        (
            {"optim": OptimConfig(lr=0.5), "divergence": DivergenceConfig(spike_factor=1.0001, spike_patience=2)},
            {"loss_spike"},
        ),
    ],
    ids=["nonfinite", "spike"],
)
def test_deferred_divergence_is_the_same_step_cause_and_row(
    data_cfg: DataConfig, dataset: Dataset, overrides: dict, causes: set[str]
) -> None:
    cfg = _config(data_cfg, steps=30, eval_interval=10, **overrides)
    each, each_rows = _rows(cfg, dataset, sync_each_step=True)
    deferred, deferred_rows = _rows(cfg, dataset, sync_each_step=False)
    assert each_rows[-1]["diverged"] == 1 and each_rows[-1]["diverged_cause"] in causes
    assert [_untimed(r) for r in deferred_rows] == [_untimed(r) for r in each_rows]
    assert (deferred.step, deferred.tokens, deferred.diverged_step) == (each.step, each.tokens, each.diverged_step)
    assert math.isfinite(deferred_rows[-1]["val_loss"])


def test_deferred_checkpoint_mid_window_resumes_identically(data_cfg: DataConfig, dataset: Dataset) -> None:
    import io

    cfg = _config(data_cfg, "z_loss")
    _, straight_rows = _rows(cfg, dataset, sync_each_step=True)
    first = TrainingRun(cfg, dataset=dataset, sync_each_step=False)
    for _ in range(3):
        first.train_step()
    first.report()
    first.train_step()  # pending on the "device" when the state is taken
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = TrainingRun(cfg, dataset=dataset, sync_each_step=False)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    rows: list[dict] = []
    resumed.run(rows.append)
    assert _untimed(rows[-1]) == _untimed(straight_rows[-1])


# ------------------------------------------------------------------------------------- attention


def test_every_oec_preset_is_flash_eligible_in_bf16_only() -> None:
    from trainables.model.attention import flash_eligible, flash_kernel_runs
    from trainables.model.presets import PAPER_PRESETS, model_preset

    for name in PAPER_PRESETS:
        cfg = model_preset(name)
        assert flash_eligible(cfg, "bf16"), name
        assert not flash_eligible(cfg, "fp32"), name
    assert not flash_eligible(model_preset("tiny", n_embd=144, n_head=4), "bf16")  # head size 36
    assert flash_kernel_runs(model_preset("tiny"), "cpu") is False


# -------------------------------------------------------------------------------- compile time


@pytest.mark.parametrize("sync_each_step", [True, False])
def test_compiling_steps_count_as_compile_time_not_training(
    data_cfg: DataConfig, dataset: Dataset, sync_each_step: bool
) -> None:
    def compiled_run() -> TrainingRun:
        torch._dynamo.reset()  # the counter is per process: start from no graphs
        run = TrainingRun(_config(data_cfg, compile=True), dataset=dataset, sync_each_step=sync_each_step)
        # Dynamo's graph capture without Inductor's code generation: the same bookkeeping, seconds on CPU.
        run.model = torch.compile(run.module, backend="eager")
        return run

    run = compiled_run()
    for _ in range(3):
        run.train_step()
    assert run.compile_s > 0
    assert run._window_tokens == run.tokens_per_step  # steps 1 and 2 compiled (the second: rotary cache)

    run = compiled_run()
    rows: list[dict] = []
    run.run(rows.append)
    assert all(r["compile_s"] > 0 for r in rows) and rows[-1]["compile_s"] == pytest.approx(run.compile_s)
    plain = TrainingRun(_config(data_cfg), dataset=dataset, sync_each_step=sync_each_step)
    plain_rows: list[dict] = []
    plain.run(plain_rows.append)
    untimed = TIMING | {"compile_s"}
    # Training is bit-identical; the evaluations' statistics come from the compiled graph, equal up to
    # float32 reassociation.
    def numbers(r: dict) -> dict:
        return {k: v for k, v in r.items() if k not in untimed and isinstance(v, int | float) and v is not None}

    def others(r: dict) -> dict:
        return {k: v for k, v in r.items() if k not in untimed and k not in numbers(r)}

    assert [numbers(r) for r in rows] == [pytest.approx(numbers(r), rel=1e-5, abs=1e-6) for r in plain_rows]
    assert [others(r) for r in rows] == [others(r) for r in plain_rows]
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in plain_rows]
