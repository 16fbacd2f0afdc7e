"""``lossweep data prepare``: sources, determinism on Ray Data, bad input, the CLI end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.trainables.test_shards import small_hf_tokenizer
from trainables.data import prepare as prepare_mod
from trainables.data.corpus import is_val_document
from trainables.data.prepare import PrepareError, find_units, iter_documents, make_plan, prepare
from trainables.data.shards import ShardError, open_shards, verify
from trainables.data.tokenizer import EOT, ByteTokenizer

WORDS = ["the", "cat", "sat", "on", "mat", "."]


def _doc(i: int) -> str:
    rng = np.random.default_rng(i)
    return " ".join(WORDS[j] for j in rng.integers(0, len(WORDS), size=20 + i % 7))


def _jsonl_folder(root: Path, files: int = 3, rows: int = 40) -> list[tuple[str, str]]:
    """A folder of JSONL files (plus a README that auto-detection must skip); returns (key, text) in order."""
    docs = []
    (root / "sub").mkdir(parents=True)
    (root / "README.md").write_text("not data")
    for f in range(files):
        name = f"sub/part-{f}.jsonl" if f else "a.jsonl"
        blob = b""
        for r in range(rows):
            text = _doc(f * 1000 + r)
            docs.append((f"{name}@{len(blob)}", text))  # a line's key is its byte offset
            blob += json.dumps({"id": r, "text": text}).encode() + b"\n"
        (root / name).write_bytes(blob)
    return sorted(docs, key=lambda kv: (kv[0].split("@")[0], int(kv[0].split("@")[1])))


def _reference(docs: list[tuple[str, str]], encode: object, eot: int) -> dict[str, list[int]]:
    """The shards' content the slow obvious way: document by document, each followed by EOT."""
    out: dict[str, list[int]] = {"train": [], "val": []}
    for key, text in docs:
        out["val" if is_val_document(key) else "train"] += [*encode(text), eot]  # type: ignore[operator]
    return out


EOT_ID = 7  # the word-level test tokenizer's EOT


def test_sources_are_found_in_corpus_order(tmp_path: Path) -> None:
    _jsonl_folder(tmp_path / "j")
    units = find_units(str(tmp_path / "j"))
    assert [u.rel for u in units] == ["a.jsonl", "sub/part-1.jsonl", "sub/part-2.jsonl"]  # README.md skipped
    assert {u.fmt for u in units} == {"jsonl"} and [u.index for u in units] == [0, 1, 2]
    table = pa.table({"text": [_doc(i) for i in range(30)], "n": list(range(30))})
    pq.write_table(table, tmp_path / "p.parquet", row_group_size=8)
    units = find_units(str(tmp_path / "p.parquet"))
    assert [(u.row_group, u.first_row) for u in units] == [(0, 0), (1, 8), (2, 16), (3, 24)]
    (tmp_path / "one.txt").write_text("hello world " * 50)
    (single,) = find_units(str(tmp_path / "one.txt"))
    assert single.fmt == "text" and single.whole_split
    assert len(find_units("stdlib")) > 300


def test_a_source_is_spelled_as_data_spells_it_or_as_a_bare_path(tmp_path: Path) -> None:
    _jsonl_folder(tmp_path / "j")
    assert find_units(f"text:{tmp_path / 'j'}") == find_units(str(tmp_path / "j"))
    with pytest.raises(PrepareError, match="shards: is not prepared"):
        find_units(f"shards:{tmp_path}")


def test_large_jsonl_files_are_cut_into_byte_ranges_without_losing_a_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = _jsonl_folder(tmp_path / "j", files=1, rows=200)
    whole = [d for u in find_units(str(tmp_path / "j")) for d in iter_documents(u, "text")]
    assert whole == docs
    monkeypatch.setattr(prepare_mod, "JSONL_UNIT_BYTES", 997)  # ranges that cut lines anywhere
    units = find_units(str(tmp_path / "j"))
    assert len(units) > 10 and sum(u.size for u in units) == (tmp_path / "j" / "a.jsonl").stat().st_size
    assert [d for u in units for d in iter_documents(u, "text")] == docs  # each line once, in order


def test_unreadable_sources_fail_in_one_line_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match="does not exist"):
        find_units(str(tmp_path / "missing"))
    (tmp_path / "d").mkdir()
    os.symlink(tmp_path / "gone.jsonl", tmp_path / "d" / "x.jsonl")  # a file that cannot be opened
    with pytest.raises(PrepareError, match=r"x\.jsonl is not readable \(No such file"):
        find_units(str(tmp_path / "d"))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(PrepareError, match="not a readable Parquet file"):
        find_units(str(tmp_path / "bad.parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PrepareError, match=r"holds no \.txt/\.md/\.py files"):
        find_units(str(tmp_path / "empty"))
    with pytest.raises(PrepareError, match="--format 'csv'"):
        find_units(str(tmp_path / "empty"), fmt="csv")


def test_a_vocabulary_that_does_not_fit_the_dtype_is_refused(tmp_path: Path) -> None:
    vocab = {f"w{i}": i for i in range(70_000)} | {"[UNK]": 70_000, EOT: 70_001}
    path = small_hf_tokenizer(tmp_path / "big.json", vocab)
    (tmp_path / "t.txt").write_text("w1 w2 w69999 " * 100)
    with pytest.raises(ShardError, match=r"70,002 ids\) does not fit uint16 shards"):
        make_plan(str(tmp_path / "t.txt"), f"hf:{path}", dtype="uint16")
    assert make_plan(str(tmp_path / "t.txt"), f"hf:{path}").dtype == "uint32"
    assert not (tmp_path / "out").exists()


@pytest.mark.ray
def test_prepare_is_deterministic_and_matches_a_serial_reference(tmp_path: Path, ray_connected: object) -> None:
    docs = _jsonl_folder(tmp_path / "src")
    tok_path = small_hf_tokenizer(tmp_path / "tokenizer.json")
    plan = make_plan(str(tmp_path / "src"), f"hf:{tok_path}")
    seen: list[int] = []
    one = prepare(plan, str(tmp_path / "one"), shard_tokens=500, concurrency=1,
                  on_progress=lambda p: seen.append(p.tokens))  # fmt: skip
    two = prepare(plan, str(tmp_path / "two"), shard_tokens=500, concurrency=2)
    assert seen == sorted(seen) and len(seen) == 3  # one progress call per unit, tokens growing
    assert seen[-1] == one["splits"]["train"]["tokens"] + one["splits"]["val"]["tokens"]
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir()) and "train-00001.bin" in names
    for name in names:  # byte-identical whatever the parallelism
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    assert one["content_hash"] == two["content_hash"]
    assert one["vocab_size"] == 8 and one["eot_id"] == EOT_ID and one["dtype"] == "uint16"
    assert (tmp_path / "one" / "tokenizer.json").read_bytes() == tok_path.read_bytes()
    words = {w: i for i, w in enumerate(["[UNK]", *WORDS])}
    expect = _reference(docs, lambda text: [words[w] for w in text.split()], EOT_ID)
    shards = verify(tmp_path / "one")
    assert shards.train[:].tolist() == expect["train"] and shards.val[:].tolist() == expect["val"]
    assert one["source"]["documents"] == {"train": expect["train"].count(EOT_ID), "val": expect["val"].count(EOT_ID)}
    first = next(text for key, text in docs if not is_val_document(key))
    assert shards.tokenizer().decode(shards.train[: len(first.split())].tolist()) == first


@pytest.mark.ray
def test_prepare_parquet_with_bytes_and_a_single_text_file(tmp_path: Path, ray_connected: object) -> None:
    texts = [_doc(i) + " ünï ✓" for i in range(50)]
    pq.write_table(pa.table({"body": texts}), tmp_path / "p.parquet", row_group_size=7)
    m = prepare(make_plan(str(tmp_path / "p.parquet"), "bytes", field="body"), str(tmp_path / "out"))
    tok = ByteTokenizer()
    expect = _reference([(f"p.parquet#{i}", t) for i, t in enumerate(texts)], tok.encode, tok.eot_id)
    shards = open_shards(tmp_path / "out")
    assert shards.train[:].tolist() == expect["train"] and shards.val[:].tolist() == expect["val"]
    assert m["dtype"] == "uint16" and m["vocab_size"] == 257 and m["source"]["field"] == "body"
    (tmp_path / "novel.txt").write_text("It was a dark and stormy night. " * 300)
    m = prepare(make_plan(str(tmp_path / "novel.txt"), "bytes"), str(tmp_path / "novel"))
    assert m["splits"]["val"]["tokens"] > 0.09 * m["splits"]["train"]["tokens"]  # one document: cut at 90 %


@pytest.mark.ray
def test_a_bad_record_fails_in_one_line_and_leaves_nothing(tmp_path: Path, ray_connected: object) -> None:
    _jsonl_folder(tmp_path / "src")
    with open(tmp_path / "src" / "sub" / "part-2.jsonl", "a") as fh:
        fh.write('{"text": 3}\n')  # the last unit fails, after the first ones were written
    message = r"part-2\.jsonl \(the line at byte \d+\) has no string field 'text'; set it with --field"
    with pytest.raises(PrepareError, match=message) as info:
        prepare(make_plan(str(tmp_path / "src"), "bytes"), str(tmp_path / "out"), shard_tokens=100)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no set, no staging folder


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    lossweep = Path(sys.executable).with_name("lossweep")
    return subprocess.run([str(lossweep), "data", *args], capture_output=True, text=True, timeout=300, check=False)


def test_cli_bad_input_is_one_line_without_starting_ray(tmp_path: Path) -> None:
    res = _cli("prepare", str(tmp_path / "nope"), "--tokenizer", "bytes", "--out", str(tmp_path / "out"),
               "--address", "127.0.0.1:1")  # fmt: skip
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0, res.stderr
    assert "does not exist" in res.stderr and "Traceback" not in res.stderr
    res = _cli("prepare", "stdlib", "--tokenizer", "words", "--out", str(tmp_path / "out"), "--address", "127.0.0.1:1")
    assert res.returncode == 2 and "unknown tokenizer 'words'" in res.stderr
    assert not (tmp_path / "out").exists()
    res = _cli("verify", str(tmp_path))
    assert res.returncode == 2 and "manifest.json is missing" in res.stderr


@pytest.mark.ray
def test_cli_prepare_then_train_on_the_shards(tmp_path: Path, ray_address: str) -> None:
    _jsonl_folder(tmp_path / "src", files=4, rows=60)
    out = tmp_path / "prepared"
    res = _cli("prepare", str(tmp_path / "src"), "--tokenizer", "bytes", "--out", str(out), "--address", ray_address,
               "--shard-tokens", "4096", "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["dtype"] == "uint16" and summary["shards"]["train"] > 1 and summary["tokens_per_s"] > 0
    assert _cli("verify", str(out)).returncode == 0
    res = _cli("prepare", str(tmp_path / "src"), "--tokenizer", "bytes", "--out", str(out), "--address", ray_address)
    assert res.returncode == 2 and "pass --overwrite" in res.stderr
    lossweep = Path(sys.executable).with_name("lossweep")
    run = subprocess.run(
        [str(lossweep), "train-local", "--data", f"shards:{out}", "--steps", "3", "--seq-len", "32",
         "--batch-size", "4", "--eval-interval", "3", "--out", str(tmp_path / "run"), "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    final = json.loads(run.stdout.strip().splitlines()[-1])
    assert np.isfinite(final["val_loss"])
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["vocab_size"] == 257 and manifest["corpus_hash"] == summary["content_hash"]
