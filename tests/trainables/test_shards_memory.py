"""A trial's memory does not grow with the corpus: the same short run on a 1 GiB shard set and on a
1 MiB one, each in its own process, peak RSS compared.

The bound: peak RSS on the 1 GiB set is at most the 1 MiB run's plus ``RSS_BOUND_MB`` (48 MB), and in
any case below the corpus's own size. Measured on the shared 2-core machine: 403 vs 421 MB, 536 vs
560 MB (the data path alone, without the model, is the same on both sets to the MB; the rest is the
two processes' own noise). What the bound catches: a stored epoch order (8.3M windows: 66 MB), pages
left mapped (~80 kB per sampled window: ~120 MB for this run), any read of the corpus (1 GiB).

The sets are sparse files (zeros that take no disk and are written instantly); opening them must not
read them (no re-hash: see test_shards.py for the byte count of an open), and the run touches only
the pages of the windows it samples.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainables.data.shards import MANIFEST, build_manifest, open_shards, shard_name

RSS_BOUND_MB = 48
GIB = 1 << 30


def sparse_shards(root: Path, *, train_tokens: int, val_tokens: int, shard_tokens: int = 1 << 28) -> Path:
    """A uint16 shard set of zeros (bytes tokenizer) made of sparse files: no data is written."""
    root.mkdir(parents=True)
    (root / "tokenizer.json").write_text('{"type": "bytes"}')
    splits = {}
    for split, n in (("train", train_tokens), ("val", val_tokens)):
        shards = []
        for i, start in enumerate(range(0, n, shard_tokens)):
            k = min(shard_tokens, n - start)
            with open(root / shard_name(split, i), "wb") as fh:
                fh.truncate(2 * k)
            shards.append({"file": shard_name(split, i), "tokens": k, "sha256": "sparse"})
        splits[split] = {"tokens": n, "shards": shards}
    manifest = build_manifest(dtype="uint16", vocab_size=257, eot_id=256, shard_tokens=shard_tokens, splits=splits,
                              tokenizer={"spec": "bytes", "file": "tokenizer.json", "sha256": "sparse"})  # fmt: skip
    (root / MANIFEST).write_text(json.dumps(manifest))
    return root


# The run is started by a small launcher that reports its child's peak RSS: a child forked straight from
# this (large, long-running) pytest process would inherit the parent's RSS as its starting ru_maxrss.
_LAUNCHER = (
    "import json, resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print(json.dumps({'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}), file=sys.stderr); "
    "sys.exit(code)"
)


def _peak_rss_mb(corpus: Path, out: Path) -> tuple[float, dict[str, object]]:
    lossweep = Path(sys.executable).with_name("lossweep")
    cmd = [str(lossweep), "train-local", "--data", f"shards:{corpus}", "--steps", "20", "--seq-len", "64",
           "--batch-size", "64", "--eval-interval", "10", "--eval-tokens", "8192", "--out", str(out),
           "--json"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *cmd], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    peak_kb = json.loads(proc.stderr.strip().splitlines()[-1])["maxrss_kb"]  # ru_maxrss is in kB on Linux
    return peak_kb / 1024, json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_trial_on_a_gigabyte_of_shards_stays_within_a_fixed_memory_bound(tmp_path: Path) -> None:
    big = sparse_shards(tmp_path / "big", train_tokens=GIB // 2 + 12_345, val_tokens=1 << 20)  # 1 GiB of uint16
    small = sparse_shards(tmp_path / "small", train_tokens=1 << 19, val_tokens=1 << 16)  # 1 MiB
    assert sum(p.stat().st_size for p in big.iterdir()) > GIB
    assert len(open_shards(big).train) == GIB // 2 + 12_345
    small_mb, small_run = _peak_rss_mb(small, tmp_path / "run-small")
    big_mb, big_run = _peak_rss_mb(big, tmp_path / "run-big")
    assert big_run["steps"] == small_run["steps"] == 20
    print(f"peak RSS: {small_mb:.0f} MB on 1 MiB, {big_mb:.0f} MB on 1 GiB")
    assert big_mb < small_mb + RSS_BOUND_MB, (big_mb, small_mb)
    assert big_mb < GIB / 2**20
