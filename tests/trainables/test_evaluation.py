"""Evaluation that can resolve what it reports: three disjoint splits for every corpus kind, the CE's
standard error over windows against a float64 reference, the test split that no decision reads, and the
official protocol's settings (random windows with replacement, a fixed L0)."""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from trainables.data.sampler import EvalWindows
from trainables.data.shard_writer import write_shards
from trainables.data.splits import SPLITS, TokenRange
from trainables.data.tokens import Dataset, load_dataset
from trainables.losses import IGNORE_INDEX
from trainables.train.config import DataConfig, DivergenceConfig, OptimConfig, TrainConfig
from trainables.train.engine import TrainingRun
from trainables.train.reduce import IdentityReducer
from trainables.train.window_ce import WindowCE

TIMING = {"tokens_per_s", "elapsed_s", "eval_s"}
TEST_KEYS = {"test_ce", "test_ce_se", "test_tokens"}
SEQ = 32


# ------------------------------------------------------------------------------------------- splits
def _hex_documents(rng: np.random.Generator, n: int) -> list[str]:
    # random hex: every 33-byte window of the corpus occurs once, so a shared window means shared text
    return ["\n".join(rng.bytes(40).hex() for _ in range(30)) for _ in range(n)]


def _corpus(kind: str, root: Path) -> str:
    rng = np.random.default_rng(7)
    if kind == "text-dir":
        (root / "docs").mkdir()
        for i, doc in enumerate(_hex_documents(rng, 60)):
            (root / "docs" / f"d{i:03d}.txt").write_text(doc)
        return f"text:{root / 'docs'}"
    if kind == "text-file":
        (root / "one.txt").write_text("\n".join(_hex_documents(rng, 20)))
        return f"text:{root / 'one.txt'}"
    ids = rng.permutation(30_000)  # each id once: a shared id means a shared token
    if kind == "parquet":
        pq.write_table(pa.table({"tokens": ids}), root / "ids.parquet")
        return f"parquet:{root / 'ids.parquet'}"
    write_shards(root / "shards", {"train": ids[:24_000], "val": ids[24_000:]}, vocab_size=30_000, shard_tokens=5_000)
    return f"shards:{root / 'shards'}"


def _occurs(window: np.ndarray, tokens: np.ndarray) -> bool:
    needle, hay = window.astype("<i4").tobytes(), tokens.astype("<i4").tobytes()
    at = hay.find(needle)
    while at >= 0 and at % 4:  # only a match on a token boundary counts
        at = hay.find(needle, at + 1)
    return at >= 0


@pytest.mark.parametrize("kind", ["text-dir", "text-file", "parquet", "shards"])
def test_no_test_window_overlaps_a_training_or_validation_window(kind: str, tmp_path: Path) -> None:
    data = load_dataset(DataConfig(corpus=_corpus(kind, tmp_path), seq_len=SEQ, cache_dir=str(tmp_path / "cache")))
    counts = data.split_tokens()
    assert list(counts) == list(SPLITS) and all(counts.values())
    assert data.val.tokens is data.test.tokens and data.val.stop == data.test.start  # one cut of the held-out tokens
    train, val, test = np.asarray(data.train[:]), data.val[:], data.test[:]
    # every test window (all of them, back to back) against every position of the other two splits
    every = EvalWindows(data.test, seq_len=SEQ, n_tokens=10**9, local_batch=64)
    assert every.num_windows == len(data.test) // (SEQ + 1)
    for x, y in every:
        for window in torch.cat([x, y[:, -1:]], dim=1).numpy():
            assert not _occurs(window, train) and not _occurs(window, val)
    val_windows = EvalWindows(data.val, seq_len=SEQ, n_tokens=10**9, local_batch=64)
    for x, _ in val_windows:
        for window in x.numpy():
            assert not _occurs(window, test) and not _occurs(window, train)


# ---------------------------------------------------------------------------------- standard error
def _reference(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, int]:
    """Mean CE over valid tokens and its SE over windows, the obvious way in float64."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    sums, counts = [], []
    for row_logp, row_labels in zip(logp, labels, strict=True):
        s, n = 0.0, 0
        for t, label in enumerate(row_labels.tolist()):
            if label != IGNORE_INDEX:
                s -= float(row_logp[t, label])
                n += 1
        sums.append(s)
        counts.append(n)
    s, n = np.array(sums), np.array(counts, dtype=float)
    mean = s.sum() / n.sum()
    k = len(s)
    se = math.sqrt(k / (k - 1) * np.sum((s - mean * n) ** 2)) / n.sum() if k > 1 else math.nan
    return mean, se, int(n.sum())


class _TwoRanks:
    """A sum over two ranks: this one's values plus the other accumulator's."""

    def __init__(self, other: WindowCE) -> None:
        self.other = other

    def reduce(self, values: Mapping[str, float], op: str = "mean") -> dict[str, float]:
        assert op == "sum"
        theirs = dict(zip(values, self.other._sums.tolist(), strict=True))
        return {k: v + theirs[k] for k, v in values.items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_window_standard_error_matches_a_float64_reference(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(12, 9, 11, generator=g) * 3).to(dtype)
    labels = torch.randint(0, 11, (12, 9), generator=g)
    labels[torch.rand(12, 9, generator=g) < 0.3] = IGNORE_INDEX  # padding: windows of unequal valid tokens
    mean, se, tokens = _reference(logits, labels)
    one = WindowCE()
    one.add(logits[:5], labels[:5])
    one.add(logits[5:], labels[5:])
    tol = {torch.float64: 1e-12, torch.float32: 1e-6, torch.bfloat16: 1e-6}[dtype]  # bf16 logits upcast exactly
    got = one.result(IdentityReducer())
    assert got[0] == pytest.approx(mean, rel=tol) and got[1] == pytest.approx(se, rel=tol * 10) and got[2] == tokens
    a, b = WindowCE(), WindowCE()
    a.add(logits[::2], labels[::2])
    b.add(logits[1::2], labels[1::2])
    split = a.result(_TwoRanks(b))  # two ranks holding alternate windows = one rank holding all
    assert split[0] == pytest.approx(mean, rel=tol) and split[1] == pytest.approx(se, rel=tol * 10)
    # padding a window further changes nothing but its count; equal windows: SE = sd / sqrt(k)
    full = torch.randint(0, 11, (12, 9), generator=g)
    eq = WindowCE()
    eq.add(logits, full)
    per_window = np.array([_reference(logits[i : i + 1], full[i : i + 1])[0] for i in range(12)])
    assert eq.result(IdentityReducer())[1] == pytest.approx(per_window.std(ddof=1) / math.sqrt(12), rel=tol * 10)
    single = WindowCE()
    single.add(logits[:1], labels[:1])
    assert math.isnan(single.result(IdentityReducer())[1])  # one window: no spread to measure


# ------------------------------------------------------------------------------------------- engine
@pytest.fixture(scope="module")
def data_cfg(tmp_path_factory: pytest.TempPathFactory) -> DataConfig:
    cache = tmp_path_factory.mktemp("token-cache")
    return DataConfig(seq_len=SEQ, batch_size=8, eval_tokens=256, test_tokens=512, cache_dir=str(cache))


@pytest.fixture(scope="module")
def dataset(data_cfg: DataConfig) -> Dataset:
    return load_dataset(data_cfg)


def _config(data: DataConfig, **kw: object) -> TrainConfig:
    params = {"steps": 6, "eval_interval": 3, "optim": OptimConfig(lr=3e-3, warmup_steps=2)}
    params.update(kw)
    return TrainConfig(model="tiny", data=data, **params)  # type: ignore[arg-type]


def _untimed(row: Mapping[str, object], drop: set[str] = TIMING) -> dict[str, object]:
    return {k: v for k, v in row.items() if k not in drop}


def test_the_test_split_is_evaluated_at_the_end_and_informs_nothing(data_cfg: DataConfig, dataset: Dataset) -> None:
    rows: list[dict] = []
    run = TrainingRun(_config(data_cfg), dataset=dataset)
    run.run(rows.append)
    assert [r["step"] for r in rows] == [3, 6]
    assert not TEST_KEYS & set(rows[0]) and TEST_KEYS <= set(rows[1])  # only at the end
    assert rows[1]["test_tokens"] == 512 and rows[1]["test_ce_se"] > 0 and math.isfinite(rows[1]["test_ce"])
    assert rows[1]["val_ce_se"] > 0 and rows[1]["eval_s"] > 0
    assert run.data_record()["evaluation"] == {
        "val": {"windows": 8, "tokens": 256},
        "test": {"windows": 16, "tokens": 512},
    }

    # Another test split entirely: every report, every decision (divergence flags, L0, the validation
    # loss that the search and ASHA read) and the weights are the same; only the test numbers differ.
    noise = np.random.default_rng(0).integers(0, 257, size=len(dataset.test)).astype(np.uint16)
    other = dataclasses.replace(dataset, test=TokenRange(noise, 0, len(noise)))
    other_rows: list[dict] = []
    other_run = TrainingRun(_config(data_cfg), dataset=other)
    other_run.run(other_rows.append)
    assert [_untimed(r, TIMING | TEST_KEYS) for r in other_rows] == [_untimed(r, TIMING | TEST_KEYS) for r in rows]
    assert other_rows[1]["test_ce"] != pytest.approx(rows[1]["test_ce"], abs=0.1)
    for name, tensor in run.module.state_dict().items():
        assert torch.equal(tensor, other_run.module.state_dict()[name]), name

    periodic: list[dict] = []
    TrainingRun(_config(data_cfg, steps=9, test_interval=3), dataset=dataset).run(periodic.append)
    assert all(TEST_KEYS <= set(r) for r in periodic)
    with pytest.raises(ValueError, match="test_interval must be 0 or a multiple of eval_interval"):
        _config(data_cfg, test_interval=4)


def test_random_windows_resume_from_a_checkpoint(data_cfg: DataConfig, dataset: Dataset) -> None:
    cfg = _config(dataclasses.replace(data_cfg, sampling="random"))
    straight_rows: list[dict] = []
    straight = TrainingRun(cfg, dataset=dataset)
    straight.run(straight_rows.append)
    epoch = TrainingRun(_config(data_cfg), dataset=dataset)
    assert not torch.equal(straight.sampler.batch(0)[0], epoch.sampler.batch(0)[0])

    first = TrainingRun(cfg, dataset=dataset)
    for _ in range(3):
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
    assert _untimed(resumed_rows[-1]) == _untimed(straight_rows[-1])
    with pytest.raises(ValueError, match="does not match this run's data order"):
        epoch.load_state_dict(first.state_dict())


def test_a_fixed_l0(data_cfg: DataConfig, dataset: Dataset) -> None:
    final = TrainingRun(_config(data_cfg, divergence=DivergenceConfig(l0=10.83)), dataset=dataset).run(lambda r: None)
    assert final["l0"] == 10.83
    for bad in (0, -1.0, math.inf, True, "ln V"):
        with pytest.raises(ValueError, match=r"divergence\.l0"):
            DivergenceConfig(l0=bad)  # type: ignore[arg-type]
    assert (
        TrainConfig.from_dict(_config(data_cfg, divergence=DivergenceConfig(l0=10.83)).to_dict()).divergence.l0 == 10.83
    )
