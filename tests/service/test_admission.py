"""The service admits a sweep through the sweep layer's one door (``search_spaces.spec.admission``):
every file a spec names -- corpus, shard set, ``hf:`` tokenizer -- is held to the data roots before it is
read, regular files only; the model is sized with the trial's own vocabulary rule, from the real
tokenizer file or shard manifest; evaluation tokens, CPUs per worker and processes per node are capped.
Each attack is tried next to its defence, on real files, FIFOs, symlinks and a real tokenizer.json."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from search_spaces.spec.admission import AdmissionContext, admit
from search_spaces.spec.footprint import eval_tokens_per_trial
from search_spaces.spec.presets import get_preset
from tests.fixtures.service import LiveService
from tests.service.helpers import demo_spec
from tests.service.test_api import assert_error
from tests.trainables.test_shards import small_hf_tokenizer
from trainables.data.roots import ENV, DataFileError, DataRootError, open_data_file, read_data_file
from trainables.data.tokenizer import EOT, tokenizer_identity, train_tokenizer
from trainables.model.presets import model_preset


def big_hf_tokenizer(path: Path, words: int = 20_000) -> Path:
    """A real word-level tokenizer.json of ``words`` entries plus EOT, built here."""
    vocab = {"[UNK]": 0, **{f"w{i}": i + 1 for i in range(words - 2)}, EOT: words - 1}
    return small_hf_tokenizer(path, vocab)


def with_data(spec: dict[str, Any], **data: Any) -> dict[str, Any]:
    spec = copy.deepcopy(spec)
    spec["data"].update(data)
    return spec


@pytest.fixture
def roots(live_service: LiveService) -> Path:
    root = Path(live_service.settings.resolved_data_roots[0])
    root.mkdir(parents=True, exist_ok=True)
    return root


def test_hf_tokenizers_outside_the_roots_are_refused_alike(live_service: LiveService, roots: Path,
                                                           tmp_path: Path) -> None:
    alice = live_service.client("alice")
    spec = demo_spec(alice)
    outside = small_hf_tokenizer(tmp_path / "tokenizer.json")
    inside = small_hf_tokenizer(roots / "tokenizer.json")
    messages = []
    for path in ("/etc/passwd", "/nonexistent/tokenizer.json", str(outside)):
        body = assert_error(alice.post("/v1/sweeps", json=with_data(spec, tokenizer=f"hf:{path}")), 422,
                            "body.data.tokenizer")
        assert body["error"] == "data_path_refused", body
        messages.append(body["errors"][0]["message"].replace(path, "PATH"))
    assert len(set(messages)) == 1, messages  # no file-existence oracle
    os.symlink(outside, roots / "link.json")  # a link inside a root to a file outside
    assert_error(alice.post("/v1/sweeps", json=with_data(spec, tokenizer=f"hf:{roots / 'link.json'}")), 422,
                 "body.data.tokenizer")
    assert alice.post("/v1/sweeps", json=with_data(spec, tokenizer=f"hf:{inside}")).status_code == 201


def test_a_fifo_or_a_device_is_refused_without_blocking(live_service: LiveService, roots: Path) -> None:
    alice = live_service.client("alice")
    os.mkfifo(roots / "fifo.json")
    body = assert_error(alice.post("/v1/sweeps", json=with_data(demo_spec(alice), tokenizer=f"hf:{roots}/fifo.json"),
                                   timeout=30), 422, "body.data.tokenizer")
    assert "not a regular file" in body["message"], body
    os.symlink("/dev/zero", roots / "zero.json")
    assert_error(alice.post("/v1/sweeps", json=with_data(demo_spec(alice), tokenizer=f"hf:{roots}/zero.json")),
                 422, "body.data.tokenizer")


def test_the_job_checks_the_tokenizer_where_it_opens_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, outside = tmp_path / "data", tmp_path / "private"
    root.mkdir()
    outside.mkdir()
    real = small_hf_tokenizer(outside / "tokenizer.json")
    monkeypatch.setenv(ENV, str(root))
    spec = f"hf:{real}"
    with pytest.raises(DataRootError):
        tokenizer_identity(spec)
    with pytest.raises(DataRootError):
        train_tokenizer(spec, [])
    inside = small_hf_tokenizer(root / "tokenizer.json")
    assert train_tokenizer(f"hf:{inside}", []).vocab_size == 8
    os.replace(inside, root / "old.json")
    os.symlink(real, inside)  # swapped for a link out after admission
    with pytest.raises(DataRootError):
        train_tokenizer(f"hf:{inside}", [])


def test_only_regular_files_of_bounded_size_are_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    # a writer that never writes: a blocking open would wait for it forever
    with pytest.raises(DataFileError, match="not a regular file"):
        open_data_file(tmp_path / "fifo", [tmp_path])
    with pytest.raises(DataFileError, match="not a regular file"):
        read_data_file("/dev/zero", anywhere=True)
    (tmp_path / "big.json").write_bytes(b"x" * 1001)
    with pytest.raises(DataFileError, match="more than the 1,000 bytes"):
        read_data_file(tmp_path / "big.json", [tmp_path], max_bytes=1000)
    assert read_data_file(tmp_path / "big.json", [tmp_path], max_bytes=1001) == b"x" * 1001
    with pytest.raises(DataFileError, match="does not exist"):
        read_data_file(tmp_path / "missing.json", [tmp_path])


def test_the_model_is_sized_from_the_real_tokenizer(service_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    live = service_factory(max_model_params=1_000_000)
    root = Path(live.settings.resolved_data_roots[0])
    root.mkdir(parents=True, exist_ok=True)
    alice = live.client("alice")
    spec = demo_spec(alice)
    assert alice.post("/v1/sweeps", json=spec).status_code == 201  # bytes: V = 257 fits
    big = big_hf_tokenizer(root / "tokenizer.json")
    body = assert_error(alice.post("/v1/sweeps", json=with_data(spec, tokenizer=f"hf:{big}")), 422, "body.model")
    assert "LOSSWEEP_MAX_MODEL_PARAMS" in body["message"] and "20,000" in body["message"], body
    # a user's vocabulary override is the trial's too: not lost
    spec_v = copy.deepcopy(spec)
    spec_v["model"]["overrides"] = {**spec_v["model"].get("overrides", {}), "vocab_size": 20_000}
    assert_error(alice.post("/v1/sweeps", json=spec_v), 422, "body.model")


def test_a_shard_set_is_sized_by_its_own_tokenizer(tmp_path: Path) -> None:
    from trainables.data.shard_writer import synthetic_shards
    from trainables.train.config import DataConfig, TrainConfig
    from trainables.train.manifest import build_manifest

    synthetic_shards(tmp_path / "set", train_tokens=4_000, val_tokens=1_000, vocab_size=20_000, shard_tokens=2_000)
    doc = get_preset("demo").model_dump(mode="json")
    doc["data"].update(corpus=f"shards:{tmp_path / 'set'}", tokenizer="bytes")
    spec = type(get_preset("demo")).model_validate(doc)
    admission = admit(spec, AdmissionContext(data_roots=[str(tmp_path)]))
    preset = model_preset(spec.model.preset, **spec.model.overrides, vocab_size=20_000)
    assert admission.footprint.vocab_size == 20_000 and admission.footprint.params == preset.num_params()
    assert [p.loc for p in admission.data_paths] == [("data", "corpus")]
    # the trial's manifest names the tokenizer the ids are in, not the configured one
    config = TrainConfig(data=DataConfig(corpus=f"shards:{tmp_path / 'set'}", tokenizer="bytes"))
    assert build_manifest(config)["tokenizer"] == "synthetic"
    assert build_manifest(TrainConfig())["tokenizer"] == TrainConfig().data.tokenizer


def test_evaluation_and_packing_are_capped(live_service: LiveService) -> None:
    alice = live_service.client("alice")
    spec = demo_spec(alice)
    flood = with_data(spec, eval_tokens=10**12)
    flood["budget"]["eval_interval"] = 1
    body = assert_error(alice.post("/v1/sweeps", json=flood), 422, "body.data.eval_tokens")
    assert "LOSSWEEP_MAX_EVAL_TOKENS_PER_TRIAL" in body["message"], body
    packed = copy.deepcopy(spec)
    packed["resources"]["cpus_per_worker"] = 0.001
    body = assert_error(alice.post("/v1/sweeps", json=packed), 422, "body.resources.cpus_per_worker")
    assert "LOSSWEEP_MIN_CPUS_PER_WORKER" in body["message"], body


def test_eval_tokens_and_processes_per_node_against_a_slow_count() -> None:
    spec = get_preset("demo")
    steps, interval = spec.total_steps(), spec.eval_interval()
    evaluations = sum(1 for step in range(1, steps + 1) if step % interval == 0 or step == steps)
    tests = 1 if not spec.test_interval() else len(range(spec.test_interval(), steps, spec.test_interval())) + 1
    assert eval_tokens_per_trial(spec) == evaluations * spec.data.eval_tokens + tests * spec.test_tokens()
    fp = admit(spec, AdmissionContext(data_roots=[])).footprint
    assert fp.eval_tokens_per_sweep == fp.eval_tokens_per_trial * spec.num_trials()
    concurrent = min(spec.max_concurrent_trials, spec.num_trials())
    assert fp.processes_per_node() == concurrent * spec.resources.workers
    assert fp.processes_per_node([{"CPU": 1.0}, {"CPU": spec.resources.cpus_per_worker}]) == min(
        concurrent * spec.resources.workers, int(1.0 / spec.resources.cpus_per_worker))


def test_processes_per_node_cap(service_factory) -> None:  # type: ignore[no-untyped-def]
    live = service_factory(max_processes_per_node=1)
    alice = live.client("alice")
    spec = demo_spec(alice)
    spec["max_concurrent_trials"] = 2
    body = assert_error(alice.post("/v1/sweeps", json=spec), 422, "body.max_concurrent_trials")
    assert "LOSSWEEP_MAX_PROCESSES_PER_NODE" in body["message"], body


def test_a_parquet_corpus_is_sized_by_its_largest_id(tmp_path: Path) -> None:
    """A pre-tokenized corpus's vocabulary is its largest id + 1, as the trial computes it from the ids;
    here from the files' column statistics, checked against the ids themselves."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from trainables.data.corpus import load_corpus
    from trainables.data.vocabulary import resolve_vocabulary

    rng = np.random.default_rng(0)
    (tmp_path / "ids").mkdir()
    for i in range(3):
        ids = rng.integers(0, 30_000, size=(50, 16))
        pq.write_table(pa.table({"tokens": [list(map(int, row)) for row in ids]}), tmp_path / "ids" / f"{i}.parquet",
                       row_group_size=20)
    spec = f"parquet:{tmp_path / 'ids'}"
    corpus = load_corpus(spec)
    slow = int(max(corpus.train.max(), corpus.val.max())) + 1
    assert resolve_vocabulary(spec, "bytes", [str(tmp_path)]).vocab_size == slow
    pq.write_table(pa.table({"tokens": [1, 2, 3]}), tmp_path / "nostats.parquet", write_statistics=False)
    assert resolve_vocabulary(f"parquet:{tmp_path / 'nostats.parquet'}", "bytes", [str(tmp_path)]).vocab_size is None
    with pytest.raises(DataRootError):
        resolve_vocabulary(spec, "bytes", [str(tmp_path / "elsewhere")])
