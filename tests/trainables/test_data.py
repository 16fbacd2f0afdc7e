"""Corpora, tokenizers, the token cache and the sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import trainables.data.tokens as data_mod
from trainables.data import corpus as corpus_mod
from trainables.data.corpus import CorpusError, load_corpus, stdlib_files
from trainables.data.sampler import BatchSampler, DataSizeError, EvalWindows
from trainables.data.tokenizer import EOT, BPETokenizer, ByteTokenizer, parse_tokenizer_spec
from trainables.data.tokens import load_dataset
from trainables.train.config import DataConfig

SAMPLE = "def f(x):\n    return x ** 2  # naïve — ünïcode ✓\n"


def test_bytes_round_trip() -> None:
    tok = ByteTokenizer()
    ids = tok.encode(SAMPLE)
    assert max(ids) < 256 and tok.vocab_size == 257
    assert tok.decode(ids) == SAMPLE
    both = tok.encode_documents([SAMPLE, "second"])
    assert both.tolist().count(tok.eot_id) == 2
    assert tok.decode(both.tolist()) == SAMPLE + EOT + "second" + EOT


def test_bpe_round_trip(shakespeare_path: Path) -> None:
    text = shakespeare_path.read_text()[:200_000]
    docs = [text[i : i + 5000] for i in range(0, len(text), 5000)]
    tok = BPETokenizer.train(docs, 400)
    assert tok.vocab_size == 400
    for sample in (SAMPLE, docs[3], "ROMEO:\nWherefore art thou?"):
        ids = tok.encode(sample)
        assert tok.decode(ids) == sample
    assert len(tok.encode(docs[3])) < 0.6 * len(docs[3].encode())  # it actually merges


@pytest.mark.parametrize(("spec", "match"), [("bpe", "bpe:N"), ("bpe:10", ">= 257"), ("words", "unknown tokenizer")])
def test_bad_tokenizer_specs(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_tokenizer_spec(spec)


def test_stdlib_corpus_loads_and_excludes_site_packages() -> None:
    files = stdlib_files()
    assert len(files) > 300
    parts = {part for f in files for part in f.parts}
    assert not parts & {"site-packages", "dist-packages", "__pycache__"}
    rel = [f.relative_to(corpus_mod.stdlib_root()).as_posix() for f in files]
    assert rel == sorted(rel) and "os.py" in rel
    corpus = load_corpus("stdlib")
    assert len(corpus.train) > 10 * len(corpus.val) / 2 > 0
    assert load_corpus("stdlib").content_hash == corpus.content_hash


def test_stdlib_walk_skips_installed_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for rel in ("a.py", "pkg/b.py", "site-packages/torch/c.py", "dist-packages/d.py", "test/test_a.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"# {rel}\nx = 1\n")
    monkeypatch.setattr(corpus_mod, "stdlib_root", lambda: tmp_path)
    corpus = load_corpus("stdlib")
    texts = "".join(corpus.train + corpus.val)
    assert "# a.py" in texts and "# pkg/b.py" in texts
    assert "site-packages" not in texts and "dist-packages" not in texts and "test_a" not in texts


def test_text_corpus_single_file_and_directory(tmp_path: Path, shakespeare_path: Path) -> None:
    single = load_corpus(f"text:{shakespeare_path}")
    assert len(single.train) == len(single.val) == 1
    assert 0.08 < len(single.val[0]) / (len(single.train[0]) + len(single.val[0])) < 0.12
    for i in range(30):
        (tmp_path / f"doc{i:02d}.md").write_text(f"document {i}\n" * 20)
    (tmp_path / "ignored.bin").write_bytes(b"\0\1")
    d = load_corpus(f"text:{tmp_path}")
    assert len(d.train) + len(d.val) == 30 and d.val and d.train


def test_parquet_corpus(tmp_path: Path) -> None:
    flat = tmp_path / "flat.parquet"
    pq.write_table(pa.table({"tokens": np.arange(5000) % 300}), flat)
    nested = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"ids": [[1, 2, 3]] * 2000}), nested)
    ds = load_dataset(DataConfig(corpus=f"parquet:{flat}", cache_dir=str(tmp_path / "cache")))
    assert ds.vocab_size == 300 and sum(ds.split_tokens().values()) == 5000 and ds.tokenizer is None
    ds2 = load_dataset(DataConfig(corpus=f"parquet:{nested}", column="ids", cache_dir=str(tmp_path / "cache")))
    assert sum(ds2.split_tokens().values()) == 6000 and ds2.vocab_size == 4


def test_errors_name_the_path_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(CorpusError, match=f"corpus path {missing} does not exist"):
        load_corpus(f"text:{missing}")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blank.txt").write_text("  \n")
    with pytest.raises(CorpusError, match=f"at {empty} is empty"):
        load_corpus(f"text:{empty}")
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["a", "b"]}), table)
    with pytest.raises(CorpusError, match=r"has no column 'tokens' \(columns: text\); set the token-id column"):
        load_corpus(f"parquet:{table}")
    with pytest.raises(CorpusError, match="unknown corpus"):
        load_corpus("wikipedia")
    small = tmp_path / "small.txt"
    small.write_text("tiny corpus " * 50)
    ds = load_dataset(DataConfig(corpus=f"text:{small}", cache_dir=str(tmp_path / "cache")))
    with pytest.raises(DataSizeError, match=r"fewer than one batch needs .*lower --batch-size / --seq-len"):
        BatchSampler(ds.train, seq_len=128, global_batch=16, seed=0)


def test_cache_is_reused_and_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(12):
        (docs / f"{i}.txt").write_text(f"text number {i} " * 200)
    cfg = DataConfig(corpus=f"text:{docs}", tokenizer="bpe:300", cache_dir=str(tmp_path / "cache"))
    entries = tmp_path / "cache" / "tokens"

    real_save = np.save

    def crash_on_val(path: Path, arr: np.ndarray) -> None:
        if Path(path).name == "val.npy":
            real_save(path, arr[: len(arr) // 2])  # half a file, then the process "dies"
            raise KeyboardInterrupt
        real_save(path, arr)

    monkeypatch.setattr(data_mod.np, "save", crash_on_val)
    with pytest.raises(KeyboardInterrupt):
        load_dataset(cfg)
    assert not [p for p in entries.iterdir() if not p.name.startswith(".")]  # no entry that could load
    monkeypatch.setattr(data_mod.np, "save", real_save)

    first = load_dataset(cfg)
    assert first.cache_path is not None and first.cache_path.parent == entries
    assert 257 < first.vocab_size <= 300  # BPE stops early when the text has no more pairs to merge
    again = load_dataset(cfg)
    assert np.array_equal(first.train, again.train) and np.array_equal(first.val[:], again.val[:])
    assert first.tokenizer is not None and first.tokenizer.decode(first.train[:50].tolist()).startswith("text number")
    # a damaged entry is rebuilt, not loaded
    damaged = first.cache_path / "train.npy"
    damaged.unlink()  # not truncated in place: `first` still maps the old file
    damaged.write_bytes(b"garbage")
    rebuilt = load_dataset(cfg)
    assert np.array_equal(rebuilt.train, first.train)
    # another tokenizer spec is another entry
    load_dataset(DataConfig(corpus=f"text:{docs}", tokenizer="bytes", cache_dir=str(tmp_path / "cache")))
    assert len([p for p in entries.iterdir() if not p.name.startswith(".")]) == 2


def _tokens(n: int = 20_000) -> np.ndarray:
    return (np.arange(n) * 7919 % 257).astype(np.uint16)


def test_sampler_is_deterministic() -> None:
    a = BatchSampler(_tokens(), seq_len=16, global_batch=8, seed=3)
    b = BatchSampler(_tokens(), seq_len=16, global_batch=8, seed=3)
    for step in (0, 1, 5, 200, 7):  # any order: a pure function of the step
        xa, ya = a.batch(step)
        xb, yb = b.batch(step)
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
        assert xa.shape == (8, 16)
        assert np.array_equal(xa[:, 1:], ya[:, :-1])  # targets are the inputs shifted by one
    c = BatchSampler(_tokens(), seq_len=16, global_batch=8, seed=4)
    assert not np.array_equal(a.starts(0), c.starts(0))


def test_sampler_shards_the_global_batch_disjointly() -> None:
    one = BatchSampler(_tokens(), seq_len=16, global_batch=8, seed=0)
    ranks = [BatchSampler(_tokens(), seq_len=16, global_batch=8, seed=0, rank=r, world_size=4) for r in range(4)]
    seen: set[int] = set()
    epoch = one.windows_per_epoch // 8
    for step in range(epoch):
        parts = [r.starts(step) for r in ranks]
        assert np.array_equal(np.concatenate(parts), one.starts(step))  # 4 workers = 1 worker, same batch
        for p in parts:
            assert not seen & set(p.tolist())  # never a window another rank (or step) had in this epoch
            seen |= set(p.tolist())
    with pytest.raises(ValueError, match="divisible by the number of workers"):
        BatchSampler(_tokens(), seq_len=16, global_batch=6, seed=0, rank=0, world_size=4)


def _window_set(windows: EvalWindows) -> set[tuple[int, ...]]:
    return {tuple(row.tolist()) for x, _ in windows for row in x}


def test_eval_windows_are_fixed_spread_over_the_split_and_sharded() -> None:
    tokens = _tokens(5000)
    full = EvalWindows(tokens, seq_len=16, n_tokens=24 * 16, local_batch=8)
    assert full.num_windows == 24 and full.num_tokens == 384 and len(full) == 3
    assert full.starts[0] == 0 and full.starts[-1] == len(tokens) - 17  # from the split's start to its end
    assert np.all(np.diff(full.starts) >= 17)  # disjoint windows, evenly spaced
    assert np.array_equal(full.starts, EvalWindows(tokens, seq_len=16, n_tokens=384, local_batch=3).starts)
    parts = [EvalWindows(tokens, seq_len=16, n_tokens=384, local_batch=4, rank=r, world_size=3) for r in range(3)]
    assert sum(p.num_windows == 24 for p in parts) == 3
    assert set().union(*(_window_set(p) for p in parts)) == _window_set(full)  # 3 ranks = 1 rank, no window twice
    assert sum(len(p.starts) for p in parts) == 24
    capped = EvalWindows(tokens, seq_len=16, n_tokens=10**9, local_batch=8)
    assert capped.num_windows == 5000 // 17  # capped by the split: every window, back to back
    with pytest.raises(DataSizeError, match="fewer than one window"):
        EvalWindows(tokens[:10], seq_len=16, n_tokens=16, local_batch=1)


def test_random_sampling_draws_with_replacement_by_step_alone() -> None:
    tokens = _tokens(3000)
    one = BatchSampler(tokens, seq_len=16, global_batch=8, seed=3, sampling="random")
    again = BatchSampler(tokens, seq_len=16, global_batch=8, seed=3, sampling="random")
    steps = [one.starts(s) for s in range(400)]
    assert np.array_equal(again.starts(123), steps[123])  # a pure function of (seed, step): resumable
    every = np.concatenate(steps)
    assert every.min() >= 0 and every.max() <= len(tokens) - 17
    assert len(set((every % 17).tolist())) == 17  # any offset, not a grid
    assert len(np.unique(every)) < len(every)  # with replacement: some window drawn twice in 3200 draws
    assert not np.array_equal(steps[0], BatchSampler(tokens, seq_len=16, global_batch=8, seed=4,
                                                     sampling="random").starts(0))  # fmt: skip
    parts = [
        BatchSampler(tokens, seq_len=16, global_batch=8, seed=3, rank=r, world_size=2, sampling="random").starts(7)
        for r in range(2)
    ]
    assert np.array_equal(np.concatenate(parts), steps[7])  # 2 workers = 1 worker
    epoch = BatchSampler(tokens, seq_len=16, global_batch=8, seed=3)
    with pytest.raises(ValueError, match="does not match"):
        epoch.load_state_dict(one.state_dict())
    epoch.load_state_dict({k: v for k, v in epoch.state_dict().items() if k != "sampling"})  # older checkpoints
    with pytest.raises(ValueError, match=r"data\.sampling"):
        BatchSampler(tokens, seq_len=16, global_batch=8, seed=3, sampling="shuffled")
