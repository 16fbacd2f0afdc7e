"""Data roots are enforced where the loader opens each file, on its real path: a link inside a root to
a file outside, or a file swapped for such a link after the sweep was accepted, is refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fixtures.service import LiveService
from tests.service.helpers import demo_spec, with_corpus
from tests.service.test_api import assert_error
from trainables.data.corpus import load_corpus
from trainables.data.roots import ENV, DataRootError, checked_path


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    root, outside = tmp_path / "data", tmp_path / "private"
    (root / "corpus").mkdir(parents=True)
    outside.mkdir()
    (root / "corpus" / "a.txt").write_text("hello world " * 50)
    (root / "corpus" / "b.txt").write_text("more text here " * 50)
    (outside / "secret.txt").write_text("the secret " * 50)
    return root, outside


def test_unconfined_runs_read_anything(layout: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    root, outside = layout
    monkeypatch.delenv(ENV, raising=False)
    os.symlink(outside / "secret.txt", root / "corpus" / "link.txt")
    corpus = load_corpus(f"text:{root / 'corpus'}")
    assert any("secret" in doc for doc in (*corpus.train, *corpus.val))


def test_a_link_out_of_the_root_is_refused_where_it_is_opened(layout: tuple[Path, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root, outside = layout
    monkeypatch.setenv(ENV, json.dumps([str(root)]))
    assert load_corpus(f"text:{root / 'corpus'}").train  # inside: fine
    os.symlink(outside / "secret.txt", root / "corpus" / "link.txt")
    with pytest.raises(DataRootError, match="outside the allowed data roots"):
        load_corpus(f"text:{root / 'corpus'}")


def test_a_file_swapped_for_a_link_after_acceptance_is_refused(layout: tuple[Path, Path],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    root, outside = layout
    monkeypatch.setenv(ENV, str(root))
    single = root / "corpus" / "a.txt"
    assert load_corpus(f"text:{single}").train
    single.unlink()
    os.symlink(outside / "secret.txt", single)
    with pytest.raises(DataRootError):
        load_corpus(f"text:{single}")


def test_parquet_links_are_refused(layout: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    root, outside = layout
    pq.write_table(pa.table({"tokens": list(range(100))}), outside / "ids.parquet")
    os.symlink(outside / "ids.parquet", root / "ids.parquet")
    monkeypatch.setenv(ENV, str(root))
    with pytest.raises(DataRootError):
        load_corpus(f"parquet:{root / 'ids.parquet'}")
    assert checked_path(root / "corpus" / "a.txt") == (root / "corpus" / "a.txt").resolve()


def test_the_service_refuses_a_directory_holding_a_link_out(live_service: LiveService, tmp_path: Path) -> None:
    alice = live_service.client("alice")
    root = Path(live_service.settings.resolved_data_roots[0])
    (root / "corpus").mkdir(parents=True)
    (root / "corpus" / "a.txt").write_text("hello " * 100)
    good, _ = with_corpus(demo_spec(alice), f"text:{root}/corpus")
    assert alice.post("/v1/sweeps", json=good).status_code == 201
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", root / "corpus" / "z.txt")
    bad, loc = with_corpus(demo_spec(alice), f"text:{root}/corpus")
    body = assert_error(alice.post("/v1/sweeps", json=bad), 422, "body." + ".".join(map(str, loc)))
    assert "z.txt" in body["message"] and "outside the allowed data roots" in body["message"]


def test_a_shard_linked_out_of_the_root_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trainables.data.shard_writer import synthetic_shards
    from trainables.data.shards import open_shards

    root, outside = tmp_path / "data", tmp_path / "private"
    manifest = synthetic_shards(root / "set", train_tokens=4_000, val_tokens=1_000, vocab_size=300,
                                shard_tokens=1_000)  # fmt: skip
    monkeypatch.setenv(ENV, str(root))
    assert len(open_shards(f"shards:{root / 'set'}").train) == 4_000  # inside: fine
    first = root / "set" / manifest["splits"]["train"]["shards"][0]["file"]
    outside.mkdir()
    os.replace(first, outside / first.name)
    os.symlink(outside / first.name, first)  # same bytes, now outside the root
    with pytest.raises(DataRootError, match="outside the allowed data roots"):
        open_shards(f"shards:{root / 'set'}")
