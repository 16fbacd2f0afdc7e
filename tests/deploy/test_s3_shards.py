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


# ------------------------------------------------------------------- a trial's node-local copy (shard cache)
def _remote_set(s3: S3Server, name: str, seed: int = 0) -> tuple[str, dict[str, np.ndarray]]:
    uri = s3.uri("prepared", name)
    splits = {"train": _ids(5_000, seed), "val": _ids(700, seed + 1)}
    write_shards(uri, splits, vocab_size=1_000, shard_tokens=2_000)
    return uri, splits


def _put(uri: str, name: str, data: bytes) -> None:
    fs, root = pafs.FileSystem.from_uri(uri)
    with fs.open_output_stream(f"{root}/{name}") as out:
        out.write(data)


def test_a_remote_set_is_staged_once_verified_and_opened_from_the_cache(s3_env: S3Server, tmp_path: Path) -> None:
    from trainables.data import shard_cache
    from trainables.data.shards import open_shards

    uri, splits = _remote_set(s3_env, "staged")
    opened = open_shards(f"shards:{uri}", cache_dir=tmp_path)
    assert opened.path.parent == tmp_path / "shards" and opened.path.name == opened.content_hash
    assert np.array_equal(opened.train[:], splits["train"]) and np.array_equal(opened.val[:], splits["val"])
    assert verify(opened.path).content_hash == opened.content_hash
    # A second trial on the node reads the cached copy: the remote shards are not read again.
    _put(uri, "train-00000.bin", b"\0" * 4_000)
    again = open_shards(f"shards:{uri}", cache_dir=tmp_path)
    assert np.array_equal(again.train[:], splits["train"])
    assert shard_cache.shard_cache_dir(tmp_path) == tmp_path / "shards"


def test_a_remote_file_that_does_not_match_its_hash_is_refused(s3_env: S3Server, tmp_path: Path) -> None:
    from trainables.data.shards import open_shards

    uri, _ = _remote_set(s3_env, "damaged")
    _put(uri, "val-00000.bin", b"\1" * 1_400)  # same size, other bytes
    with pytest.raises(ShardError, match=r"val-00000\.bin does not match the hash in its manifest"):
        open_shards(f"shards:{uri}", cache_dir=tmp_path)
    folder = next((tmp_path / "shards").iterdir())
    assert not (folder / MANIFEST).exists() and not (folder / "val-00000.bin").exists()


def test_an_interrupted_copy_resumes_where_it_stopped(s3_env: S3Server, tmp_path: Path) -> None:
    from trainables.data import shard_cache
    from trainables.data.shards import open_shards

    uri, splits = _remote_set(s3_env, "resumed")
    first = open_shards(f"shards:{uri}", cache_dir=tmp_path).path
    # As a copy killed mid-file leaves it: no manifest, one shard half-written, one not started.
    (first / MANIFEST).unlink()
    whole = (first / "train-00001.bin").read_bytes()
    (first / "train-00001.bin").unlink()
    (first / "train-00001.bin.partial").write_bytes(whole[: len(whole) // 2])
    (first / "val-00000.bin").unlink()
    kept = (first / "train-00000.bin").stat().st_mtime_ns
    fetched: list[str] = []
    real_fetch = shard_cache._fetch

    def counting(fs, src, dst, *args):  # type: ignore[no-untyped-def]
        fetched.append(dst.name)
        return real_fetch(fs, src, dst, *args)

    shard_cache._fetch = counting
    try:
        opened = open_shards(f"shards:{uri}", cache_dir=tmp_path)
    finally:
        shard_cache._fetch = real_fetch
    assert sorted(fetched) == ["train-00001.bin", "val-00000.bin"]
    assert (first / "train-00000.bin").stat().st_mtime_ns == kept
    assert np.array_equal(opened.train[:], splits["train"]) and np.array_equal(opened.val[:], splits["val"])


def test_concurrent_trials_on_a_node_download_a_set_once(s3_env: S3Server, tmp_path: Path) -> None:
    import threading

    from trainables.data import shard_cache
    from trainables.data.shards import open_shards

    uri, _ = _remote_set(s3_env, "concurrent")
    fetched: list[str] = []
    real_fetch = shard_cache._fetch

    def counting(fs, src, dst, *args):  # type: ignore[no-untyped-def]
        fetched.append(dst.name)
        return real_fetch(fs, src, dst, *args)

    shard_cache._fetch = counting
    opened: list[object] = []
    try:
        threads = [threading.Thread(target=lambda: opened.append(open_shards(f"shards:{uri}", cache_dir=tmp_path)))
                   for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        shard_cache._fetch = real_fetch
    assert len(opened) == 3
    assert sorted(fetched) == sorted(["tokenizer.json", "train-00000.bin", "train-00001.bin", "train-00002.bin",
                                      "val-00000.bin"])


def test_the_cache_is_bounded_and_evicts_the_least_recently_used_set(
    s3_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainables.data.shards import open_shards

    old, _ = _remote_set(s3_env, "old", seed=3)
    new, splits = _remote_set(s3_env, "new", seed=5)
    monkeypatch.setenv("LOSSWEEP_SHARD_CACHE_BYTES", "16000")  # room for one set of ~11.5 kB, not two
    first = open_shards(f"shards:{old}", cache_dir=tmp_path).path
    second = open_shards(f"shards:{new}", cache_dir=tmp_path)
    assert not first.exists() and np.array_equal(second.train[:], splits["train"])
    monkeypatch.setenv("LOSSWEEP_SHARD_CACHE_BYTES", "1000")
    with pytest.raises(ShardError, match="more than the shard cache may hold"):
        open_shards(f"shards:{old}", cache_dir=tmp_path)


def test_a_confined_run_stages_only_sets_under_its_uri_roots(
    s3_env: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainables.data.roots import DataRootError
    from trainables.data.shards import open_shards

    uri, _ = _remote_set(s3_env, "confined")
    monkeypatch.setenv("LOSSWEEP_DATA_ROOTS", str(tmp_path / "local-only"))
    with pytest.raises(DataRootError, match="outside the allowed data roots"):
        open_shards(f"shards:{uri}", cache_dir=tmp_path)
    monkeypatch.setenv("LOSSWEEP_DATA_ROOTS", f'["{tmp_path / "local-only"}", "{s3_env.uri("prepared")}"]')
    with pytest.raises(DataRootError):
        open_shards(f"shards:{s3_env.uri('prepared', '..', 'elsewhere')}", cache_dir=tmp_path)
    assert open_shards(f"shards:{uri}", cache_dir=tmp_path).path.is_dir()  # the cache itself is outside the roots
