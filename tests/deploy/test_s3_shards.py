"""Token shards written to S3 (a local moto server): the same files as on disk, the manifest last as the
set's commit mark, an interrupted write cleared by the next one, and a downloaded copy that opens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from tests.deploy.conftest import S3Server
from trainables.data.shard_writer import write_shards
from trainables.data.shards import MANIFEST, ShardError, verify


def _names(uri: str) -> set[str]:
    fs, root = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return {i.path[len(root) + 1 :] for i in infos if i.is_file}


def _ids(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1_000, size=n)


def test_shards_on_s3_match_a_local_set(s3_env: S3Server, tmp_path: Path) -> None:
    uri = s3_env.uri("prepared", "web")
    splits = {"train": _ids(5_000, 0), "val": _ids(700, 1)}
    remote = write_shards(uri, splits, vocab_size=1_000, shard_tokens=2_000)
    local = write_shards(tmp_path / "local", splits, vocab_size=1_000, shard_tokens=2_000)
    assert remote == local
    assert _names(uri) == {p.name for p in (tmp_path / "local").iterdir()}
    with pytest.raises(ShardError, match="already holds a shard set; pass --overwrite"):
        write_shards(uri, splits, vocab_size=1_000)
    fs, root = pafs.FileSystem.from_uri(uri)
    (tmp_path / "copy").mkdir()
    pafs.copy_files(root, str(tmp_path / "copy"), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    copy = verify(tmp_path / "copy")  # what a trial does after `aws s3 sync`
    assert copy.content_hash == local["content_hash"] and np.array_equal(copy.val[:], splits["val"])


def test_an_interrupted_s3_write_has_no_manifest_and_the_rerun_starts_clean(s3_env: S3Server) -> None:
    uri = s3_env.uri("prepared", "interrupted")

    def chunks() -> object:
        yield _ids(3_000, 0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_shards(uri, {"train": chunks(), "val": _ids(10, 1)}, vocab_size=1_000, shard_tokens=1_000)
    left = _names(uri)
    assert MANIFEST not in left and "train-00000.bin" in left  # objects, but no set: nothing reads them
    write_shards(uri, {"train": _ids(1_500, 2), "val": _ids(10, 1)}, vocab_size=1_000, shard_tokens=1_000)
    assert _names(uri) == {MANIFEST, "tokenizer.json", "train-00000.bin", "train-00001.bin", "val-00000.bin"}
