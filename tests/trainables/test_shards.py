"""Token shards: writing, opening in O(1), the manifest checks, hf: tokenizers, and training from shards."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from trainables.data import sampler as sampler_mod
from trainables.data.sampler import BatchSampler, DataSizeError, EvalWindows, feistel_permute
from trainables.data.shard_writer import synthetic_shards, write_shards
from trainables.data.shards import MANIFEST, ShardedTokens, ShardError, open_shards, shard_dtype, verify
from trainables.data.tokenizer import EOT, parse_tokenizer_spec, tokenizer_identity, train_tokenizer
from trainables.data.tokens import load_dataset
from trainables.train.config import DataConfig


def _ids(n: int, vocab: int = 300, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=n).astype(np.uint32)


def test_round_trip_across_shard_boundaries(tmp_path: Path) -> None:
    train, val = _ids(10_007), _ids(2_000, seed=1)
    m = write_shards(tmp_path / "s", {"train": train, "val": [val[:500], val[500:]]}, vocab_size=300,
                     shard_tokens=1_000)  # fmt: skip
    assert m["dtype"] == "uint16" and m["splits"]["train"]["tokens"] == 10_007
    assert [s["tokens"] for s in m["splits"]["train"]["shards"]] == [1_000] * 10 + [7]  # fixed size, last shorter
    shards = verify(tmp_path / "s")
    assert isinstance(shards.train, ShardedTokens) and len(shards.train) == 10_007 and len(shards.val) == 2_000
    for a, b in [(0, 10_007), (995, 1_005), (999, 1_000), (1_000, 3_001), (10_000, 10_007), (5, 5)]:
        assert np.array_equal(shards.train[a:b], train[a:b]), (a, b)  # windows that straddle shards too
    assert np.array_equal(shards.val[:], val)
    assert (tmp_path / "s" / "train-00010.bin").stat().st_size == 7 * 2
    assert not list(tmp_path.glob(".*"))  # no staging folder left behind


def test_dtype_follows_the_vocabulary() -> None:
    assert shard_dtype(257) == "uint16" and shard_dtype(65_536) == "uint16"
    assert shard_dtype(65_537) == "uint32" and shard_dtype(50_304, "uint32") == "uint32"
    with pytest.raises(ShardError, match=r"70,000 ids\) does not fit uint16"):
        shard_dtype(70_000, "uint16")
    with pytest.raises(ShardError, match="does not fit uint32"):
        shard_dtype(2**32 + 1)


def test_same_input_same_bytes_and_hash(tmp_path: Path) -> None:
    a = synthetic_shards(tmp_path / "a", train_tokens=5_000, val_tokens=700, vocab_size=70_000, shard_tokens=2_048)
    b = synthetic_shards(tmp_path / "b", train_tokens=5_000, val_tokens=700, vocab_size=70_000, shard_tokens=2_048)
    assert a["dtype"] == "uint32" and a["content_hash"] == b["content_hash"]
    for f in sorted(p.name for p in (tmp_path / "a").iterdir()):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    c = synthetic_shards(tmp_path / "c", train_tokens=5_000, val_tokens=700, vocab_size=70_000, seed=1)
    assert c["content_hash"] != a["content_hash"]


def test_existing_output_is_refused_unless_overwrite(tmp_path: Path) -> None:
    synthetic_shards(tmp_path / "s", train_tokens=100, val_tokens=100, vocab_size=300)
    with pytest.raises(ShardError, match="already holds a shard set; pass --overwrite"):
        synthetic_shards(tmp_path / "s", train_tokens=100, val_tokens=100, vocab_size=300)
    m = synthetic_shards(tmp_path / "s", train_tokens=200, val_tokens=100, vocab_size=300, overwrite=True)
    assert len(open_shards(tmp_path / "s").train) == 200 == m["splits"]["train"]["tokens"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_an_interrupted_write_leaves_nothing_and_a_rerun_starts_clean(tmp_path: Path) -> None:
    def chunks() -> object:
        yield _ids(3_000)
        raise KeyboardInterrupt  # the user presses Ctrl-C mid-write

    with pytest.raises(KeyboardInterrupt):
        write_shards(tmp_path / "s", {"train": chunks(), "val": _ids(10)}, vocab_size=300, shard_tokens=1_000)
    assert list(tmp_path.iterdir()) == []  # neither the set nor its staging folder
    # a hard kill leaves the staging folder behind: the next run removes it and writes the whole set
    (tmp_path / ".s.partial").mkdir()
    (tmp_path / ".s.partial" / "train-00000.bin").write_bytes(b"\0" * 10)
    write_shards(tmp_path / "s", {"train": _ids(3_000), "val": _ids(10)}, vocab_size=300, shard_tokens=1_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    assert len(verify(tmp_path / "s").train) == 3_000


def _tamper(root: Path, fn: object) -> None:
    manifest = json.loads((root / MANIFEST).read_text())
    fn(manifest)  # type: ignore[operator]
    (root / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda root: (root / "train-00001.bin").unlink(), "train-00001.bin is missing"),
        (lambda root: open(root / "val-00000.bin", "ab").write(b"\0\0"), "val-00000.bin holds 202 bytes but"),
        (lambda root: _tamper(root, lambda m: m["splits"]["train"].update(tokens=5)), "train shards hold 1,500"),
        (lambda root: _tamper(root, lambda m: m["splits"]["val"]["shards"][0].update(file="../x")), "plain file"),
        (lambda root: _tamper(root, lambda m: m.update(version=99)), "format version 99"),
        (lambda root: (root / MANIFEST).write_text("{"), "is not JSON"),
        (lambda root: (root / MANIFEST).unlink(), "manifest.json is missing"),
    ],
)
def test_a_manifest_that_does_not_match_its_files_is_refused(tmp_path: Path, damage: object, match: str) -> None:
    root = tmp_path / "s"
    write_shards(root, {"train": _ids(1_500), "val": _ids(100)}, vocab_size=300, shard_tokens=1_000)
    damage(root)  # type: ignore[operator]
    with pytest.raises(ShardError, match=match) as info:
        open_shards(f"shards:{root}")
    assert "\n" not in str(info.value)


def test_verify_finds_changed_bytes_that_open_does_not_read(tmp_path: Path) -> None:
    root = tmp_path / "s"
    write_shards(root, {"train": _ids(1_500), "val": _ids(100)}, vocab_size=300, shard_tokens=1_000)
    with open(root / "train-00000.bin", "r+b") as fh:
        fh.write(b"\x07\x00")
    assert len(open_shards(root).train) == 1_500  # O(1) open: sizes only
    with pytest.raises(ShardError, match=r"train-00000\.bin does not match the hash"):
        verify(root)


def test_remote_and_missing_shard_folders_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ShardError, match="cannot reach it"):
        open_shards("shards:nosuchscheme://bucket/prepared", cache_dir=tmp_path)
    with pytest.raises(ShardError, match="is not a folder; prepare one with `lossweep data prepare`"):
        open_shards(f"shards:{tmp_path / 'nope'}")
    with pytest.raises(ShardError, match="names no folder"):
        open_shards("shards:")


# ------------------------------------------------------------------------------------------ sampler
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 17, 64, 1000, 4099, 65_537])
def test_feistel_order_is_a_permutation(n: int) -> None:
    keys = np.array([3, 1, 4, 1, 5, 9], dtype=np.uint64)
    out = feistel_permute(np.arange(n), n, keys)
    assert np.array_equal(np.sort(out), np.arange(n))
    assert np.array_equal(feistel_permute(np.arange(n)[::-1].copy(), n, keys), out[::-1])  # elementwise, pure
    if n >= 1000:
        assert np.mean(out == np.arange(n)) < 0.01  # actually shuffles


def test_large_corpora_get_a_computed_order_with_the_same_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampler_mod, "STORED_ORDER_MAX_WINDOWS", 10)
    tokens = _ids(20_000)
    one = BatchSampler(tokens, seq_len=16, global_batch=8, seed=0)
    assert one.windows_per_epoch > 10 and one._epoch_plan(0).order is None
    ranks = [BatchSampler(tokens, seq_len=16, global_batch=8, seed=0, rank=r, world_size=4) for r in range(4)]
    epoch_starts: list[int] = []
    for step in range(one.windows_per_epoch // 8):
        parts = [r.starts(step) for r in ranks]
        assert np.array_equal(np.concatenate(parts), one.starts(step))
        epoch_starts += one.starts(step).tolist()
    assert len(set(epoch_starts)) == len(epoch_starts)  # every window once per epoch, never twice
    offset = one._epoch_plan(0).offset
    assert all((s - offset) % 17 == 0 for s in epoch_starts)
    resumed = BatchSampler(tokens, seq_len=16, global_batch=8, seed=0)  # a fresh process after a restart
    resumed.load_state_dict(one.state_dict())
    for step in (1_000, 3, 999_999):
        assert np.array_equal(resumed.batch(step)[0], one.batch(step)[0])
    assert not np.array_equal(BatchSampler(tokens, seq_len=16, global_batch=8, seed=1).starts(0), one.starts(0))


def test_sampler_reads_windows_straight_from_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = _ids(12_345)
    write_shards(tmp_path / "s", {"train": tokens, "val": _ids(600)}, vocab_size=300, shard_tokens=1_000)
    shards = open_shards(tmp_path / "s")
    for limit in (sampler_mod.STORED_ORDER_MAX_WINDOWS, 10):
        monkeypatch.setattr(sampler_mod, "STORED_ORDER_MAX_WINDOWS", limit)
        from_maps = BatchSampler(shards.train, seq_len=32, global_batch=8, seed=5)
        in_memory = BatchSampler(tokens, seq_len=32, global_batch=8, seed=5)
        for step in range(60):  # windows straddle the 1,000-token shard boundaries along the way
            (xa, ya), (xb, yb) = from_maps.batch(step), in_memory.batch(step)
            assert np.array_equal(xa, xb) and np.array_equal(ya, yb) and str(xa.dtype) == "torch.int64"
    evals = EvalWindows(shards.val, seq_len=32, n_tokens=10_000, local_batch=8)
    assert evals.num_windows == 18 and len(evals) == 3  # 600 tokens hold 18 windows of 33, capped there
    first = next(iter(evals))[0]
    assert np.array_equal(first[1].numpy(), _ids(600)[33:65].astype(np.int64))  # all of them: back to back
    with pytest.raises(DataSizeError, match="fewer than one batch needs"):
        BatchSampler(shards.val, seq_len=64, global_batch=16, seed=0)


def test_a_run_opens_shards_with_their_vocabulary_and_hash(tmp_path: Path) -> None:
    m = synthetic_shards(tmp_path / "s", train_tokens=20_000, val_tokens=3_000, vocab_size=1_000)
    data = load_dataset(DataConfig(corpus=f"shards:{tmp_path / 's'}", seq_len=16, batch_size=4))
    assert data.vocab_size == 1_000 and data.corpus_hash == m["content_hash"] and data.tokenizer is None
    assert len(data.train) == 20_000 and len(data.val) + len(data.test) == 3_000


# ------------------------------------------------------------------------------------------ hf:PATH
def small_hf_tokenizer(path: Path, vocab: dict[str, int] | None = None, *, eot: bool = True) -> Path:
    """A word-level tokenizer.json built here (no download): a handful of words, [UNK] and EOT."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = vocab or {w: i for i, w in enumerate(["[UNK]", "the", "cat", "sat", "on", "mat", ".", EOT])}
    tok = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if eot:
        tok.add_special_tokens([EOT])
    tok.save(str(path))
    return path


def test_hf_tokenizer_file(tmp_path: Path) -> None:
    path = small_hf_tokenizer(tmp_path / "tokenizer.json")
    spec = f"hf:{path}"
    assert parse_tokenizer_spec(spec) == ("hf", None)
    tok = train_tokenizer(spec, [])
    assert tok.vocab_size == 8 and tok.eot_id == 7
    assert tok.encode_documents(["the cat sat", "on the dog"]).tolist() == [1, 2, 3, 7, 4, 1, 0, 7]
    before = tokenizer_identity(spec)
    small_hf_tokenizer(path, {"[UNK]": 0, "the": 1, EOT: 2})
    assert tokenizer_identity(spec) != before and tokenizer_identity("bytes") == "bytes"  # edits make a new cache key
    with pytest.raises(ValueError, match="name the file"):
        parse_tokenizer_spec("hf:")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad\.json is not a readable tokenizer\.json"):
        train_tokenizer(f"hf:{tmp_path / 'bad.json'}", [])
    small_hf_tokenizer(tmp_path / "no-eot.json", {"[UNK]": 0, "a": 1}, eot=False)
    with pytest.raises(ValueError, match="has no <\\|endoftext\\|> token"):
        train_tokenizer(f"hf:{tmp_path / 'no-eot.json'}", [])


def test_hf_tokenizer_on_a_text_corpus(tmp_path: Path) -> None:
    path = small_hf_tokenizer(tmp_path / "tokenizer.json")
    (tmp_path / "doc.txt").write_text("the cat sat on the mat . " * 400)
    data = load_dataset(DataConfig(corpus=f"text:{tmp_path / 'doc.txt'}", tokenizer=f"hf:{path}", seq_len=8,
                                   batch_size=2, cache_dir=str(tmp_path / "cache")))  # fmt: skip
    assert data.vocab_size == 8 and set(np.unique(np.asarray(data.train)).tolist()) <= set(range(8))
    assert data.tokenizer is not None and data.tokenizer.decode([1, 2]) == "the cat"


def test_opening_reads_only_the_manifest(tmp_path: Path) -> None:
    """O(1) in the corpus size: opening a 64 MB set reads a few kB (no hashing, no copying)."""
    root = tmp_path / "s"
    synthetic_shards(root, train_tokens=32 << 20, val_tokens=1 << 16, vocab_size=300, shard_tokens=8 << 20)
    before = _rchar()
    shards = open_shards(root)
    assert _rchar() - before < 64 << 10
    assert len(shards.train) == 32 << 20
    assert os.path.getsize(root / "train-00000.bin") == 16 << 20


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")
