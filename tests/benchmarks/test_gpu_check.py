"""benchmarks/gpu_check.py on a machine without a GPU: it refuses in one line, and its parts are run
here on the CPU at toy size (data source, engine throughput, loss-variant timing, printed lines), so
the first GPU run does not meet a line that never ran."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_refuses_on_cpu_with_one_line(gpu_check: ModuleType) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [gpu_check.REFUSAL]


def test_synthetic_corpus_loads_with_the_whole_vocabulary(gpu_check: ModuleType, tmp_path: Path) -> None:
    from trainables.data.tokens import load_dataset

    spec = gpu_check.synthetic_corpus(tmp_path / "data", tokens=20_000, vocab=300)
    args = gpu_check.main.__globals__["argparse"].Namespace(steps=8, seq_len=16, batch_size=4)
    config = gpu_check._config(args, spec, "tiny", "simreg")
    assert config.use_gpu and config.precision == "bf16" and config.compile is None
    data = load_dataset(config.data)
    assert data.vocab_size == 300 and sum(data.split_tokens().values()) == 20_000


def test_printed_lines_take_missing_figures(gpu_check: ModuleType) -> None:
    engine = {
        "model": "oec-57m", "tokens_per_s": 1.5e5, "mfu": None, "peak_device": None, "gpu_mem_peak_gib": 12.3,
        "gpu_mem_estimate_gib": 14.0, "compile_s": 41.0, "flash_attention": True,
    }  # fmt: skip
    assert "MFU -" in gpu_check._engine_line(engine) and "no peak for this device" in gpu_check._engine_line(engine)
    ray = {"model": "oec-16m", "shape": "1 worker x 1 GPU", "backend": "nccl", "tokens_per_s": None, "mfu": 0.41,
           "gpu_mem_peak_gib": None, "compile_s": None, "wall_s": 60.0}  # fmt: skip
    assert "MFU 41.0%" in gpu_check._ray_line(ray)
    timing = {"best_step_ms": 10.0, "median_step_ms": 11.0, "ratio_median": math.pi / 3, "warmup_and_compile_s": 1.0}
    variants = {
        name: {**timing, "ratio_best": 1.0 + i / 100, "target": target}
        for i, (name, target) in enumerate(gpu_check.VARIANTS.items())
    }
    lines = gpu_check._ratio_lines({"model": "oec-57m", "seq_len": 2048, "batch_size": 16, "variants": variants})
    assert len(lines) == 1 + len(gpu_check.VARIANTS)
    assert any("NOT met" in line for line in lines) and any(": met" in line for line in lines)


def _args(gpu_check: ModuleType, **kw: object) -> object:
    defaults = {"steps": 4, "seq_len": 16, "batch_size": 4, "ratio_model": "tiny", "ratio_rounds": 2,
                "ratio_steps": 1, "ratio_warmup": 1}  # fmt: skip
    return gpu_check.main.__globals__["argparse"].Namespace(**{**defaults, **kw})


def test_engine_and_variant_parts_run_at_toy_size_on_cpu(gpu_check: ModuleType, tmp_path: Path) -> None:
    spec = gpu_check.synthetic_corpus(tmp_path / "data", tokens=20_000, vocab=300)
    args = _args(gpu_check)
    cpu = torch.device("cpu")
    engine = gpu_check.engine_throughput(args, spec, "tiny", cpu)
    assert engine["steps"] == 4 and engine["tokens_per_s"] > 0 and engine["diverged"] == 0
    assert engine["mfu"] is None and engine["gpu_mem_peak_gib"] is None and engine["flash_attention"] is False
    gpu_check._engine_line(engine)
    ratios = gpu_check.variant_ratios(args, spec, cpu)
    assert set(ratios["variants"]) == set(gpu_check.VARIANTS)
    assert ratios["variants"]["baseline"]["ratio_best"] == 1.0
    assert all(v["best_step_ms"] > 0 for v in ratios["variants"].values())
