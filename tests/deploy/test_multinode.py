"""A real two-node Ray cluster on one machine (a head plus a node joined with ``ray start --address``,
separate temp dirs and ports), sweep storage on S3 (a local moto server), and a two-trial sweep run
by lossweep's own driver (``python -m search_spaces.run.job SPEC s3://...``) whose trials train on both
nodes: the node each trial's rank 0 ran on comes back in the sweep's results (``node_id``).

With one CPU per node and two concurrent one-worker trials, Ray has to put one trial on each node;
the shared S3 storage is what makes that work on a real cluster, where nodes share no disk. The corpus
is a token shard set on S3 too: each trial's node stages it into its shard cache before mapping it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import S3Server
from tests.deploy.deploy_files import ROOT
from tests.deploy.two_node_cluster import alive_nodes, two_node_cluster

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SWEEP_TIMEOUT_S = 480  # generous for a loaded machine; about a minute when it is idle


def small_corpus(path: Path, size: int = 200_000) -> Path:
    """A few hundred kB of real text (standard library sources) in one file: tokenizing it takes
    milliseconds where the whole ``stdlib`` corpus takes seconds per cold node."""
    from trainables.data.corpus import stdlib_files

    chunks: list[str] = []
    for source in stdlib_files():
        chunks.append(source.read_text(errors="replace"))
        if sum(map(len, chunks)) >= size:
            break
    path.write_text("\n".join(chunks)[:size])
    return path


def shards_on_s3(uri: str, corpus: Path) -> str:
    """The corpus as byte-level token shards on object storage (what `lossweep data prepare` writes)."""
    import numpy as np

    from trainables.data.shard_writer import write_shards

    ids = np.frombuffer(corpus.read_bytes(), dtype=np.uint8).astype(np.uint16)
    cut = len(ids) * 9 // 10
    write_shards(uri, {"train": ids[:cut], "val": ids[cut:]}, vocab_size=257, eot_id=256, tokenizer_spec="bytes",
                 tokenizer_file=b'{"type": "bytes"}', shard_tokens=50_000)
    return f"shards:{uri}"


def two_trial_spec(path: Path, corpus: str) -> Path:
    spec = {
        "name": "two-nodes",
        "model": {"preset": "tiny"},
        "data": {
            "corpus": corpus,
            "tokenizer": "bytes",
            "seq_len": 32,
            "batch_size": 4,
            "eval_tokens": 32,
            "test_tokens": 64,
        },
        "budget": {"steps": 10, "warmup_steps": 2, "eval_interval": 5},
        "methods": ["baseline"],
        "lr": [1e-3, 3e-3],
        "search": {"algorithm": "grid"},
        "scheduler": {"name": "none"},
        "seeds": [0],
        "resources": {"workers": 1, "cpus_per_worker": 1},
        "max_concurrent_trials": 2,
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_trials_of_one_sweep_train_on_both_nodes(
    tmp_path: Path, s3_env: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from search_spaces.run import results

    # Set before the cluster starts, as s3_env is: the raylets' trial workers inherit it.
    monkeypatch.setenv("LOSSWEEP_SHARD_CACHE", str(tmp_path / "shard-cache"))
    # s3_env puts the AWS variables in this process's environment *before* the cluster starts, so the
    # raylets, and every trial worker they start, reach the S3 server too.
    sweep_dir = s3_env.uri("sweeps", "two-nodes")
    corpus = shards_on_s3(s3_env.uri("prepared", "corpus"), small_corpus(tmp_path / "corpus.txt"))
    spec = two_trial_spec(tmp_path / "spec.yaml", corpus)
    with two_node_cluster(tmp_path / "ray-state", head_cpus=1, worker_cpus=1) as cluster:
        nodes = alive_nodes(cluster.head)
        assert len(nodes) == 2
        proc = subprocess.run(
            [sys.executable, "-m", "search_spaces.run.job", str(spec), sweep_dir],
            env={**cluster.env(), "LOSSWEEP_CACHE_DIR": str(tmp_path / "cache")},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=SWEEP_TIMEOUT_S,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    staged = list((tmp_path / "shard-cache").glob("*/manifest.json"))
    assert len(staged) == 1, staged  # one verified copy, shared by the trials (one cache dir on this machine)

    progress = results.read_progress(sweep_dir)
    assert progress is not None and progress["status"] == "SUCCEEDED", progress
    trials = results.read_trials(sweep_dir)
    assert len(trials) == 2 and set(trials["status"]) == {"TERMINATED"}, trials.to_dict("records")
    metrics = results.read_metrics(sweep_dir)
    node_of = metrics.groupby("trial_id")["node_id"].agg(set).to_dict()
    assert set(node_of) == set(trials["trial_id"])
    for trial_id, seen in node_of.items():
        assert len(seen) == 1 and seen <= set(nodes), f"trial {trial_id} reports nodes {seen}, cluster has {nodes}"
    assert {next(iter(s)) for s in node_of.values()} == set(nodes), f"both trials trained on one node: {node_of}"

    # Tune's experiment state and every trial's checkpoints are in the bucket, not on a node's disk.
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(sweep_dir)
    files = [i.path[len(root) + 1 :] for i in fs.get_file_info(pafs.FileSelector(root, recursive=True)) if i.is_file]
    assert {"spec.yaml", "trials.parquet", "metrics.parquet", "progress.json"} <= set(files)
    checkpoints = [f for f in files if f.endswith("/state.pt")]
    assert len({f.split("/checkpoint_")[0] for f in checkpoints}) == 2, checkpoints
