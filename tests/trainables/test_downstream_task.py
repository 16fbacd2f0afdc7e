"""The local next-line task through the harness: a model trained for a few hundred steps scores above
chance (1 in 4), the same model untrained scores at chance; the task's data and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval")

from trainables.downstream.errors import EvalError
from trainables.downstream.evaluate import evaluate, load_tasks
from trainables.downstream.lm import LossweepLM
from trainables.downstream.local_tasks import NEXT_LINE, NEXT_LINE_CHOICES, next_line_docs
from trainables.train.config import DataConfig, OptimConfig, TrainConfig
from trainables.train.engine import TrainingRun

CHANCE = 1 / NEXT_LINE_CHOICES
QUESTIONS = 200
STEPS = 300


def test_next_line_questions_are_fixed_and_well_formed() -> None:
    docs = next_line_docs(size=50)
    assert docs == next_line_docs(size=50)  # same corpus, same questions
    for doc in docs:
        assert len(doc["choices"]) == NEXT_LINE_CHOICES == len(set(doc["choices"]))
        assert 0 <= doc["label"] < NEXT_LINE_CHOICES and doc["context"].endswith("\n")
    labels = [d["label"] for d in docs]
    assert len(set(labels)) > 1  # the true line's place is drawn, not fixed


@pytest.mark.slow
def test_trained_model_scores_above_chance_and_untrained_at_chance(train_data_cache: str) -> None:
    torch.manual_seed(0)
    config = TrainConfig(
        model="tiny",
        steps=STEPS,
        eval_interval=STEPS,
        data=DataConfig(seq_len=64, batch_size=16, eval_tokens=64, test_tokens=64, cache_dir=train_data_cache),
        optim=OptimConfig(lr=3e-3, warmup_steps=20),
    )
    run = TrainingRun(config)
    lm = LossweepLM(run.module, run.data.tokenizer, max_length=config.data.seq_len, batch_size=64)
    untrained = evaluate(lm, [NEXT_LINE], limit=QUESTIONS)[NEXT_LINE]
    run.run(lambda row: None)
    trained = evaluate(lm, [NEXT_LINE], limit=QUESTIONS)[NEXT_LINE]
    assert untrained.n == trained.n == QUESTIONS and untrained.metric == "acc"
    # at chance: within three standard errors of 1/4; above chance: more than three above it
    assert abs(untrained.acc - CHANCE) < 3 * untrained.acc_se
    assert trained.acc > CHANCE + 3 * trained.acc_se


def test_unknown_task_and_missing_corpus_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="no tasks named"):
        load_tasks([])
    with pytest.raises(EvalError, match=f"task '{NEXT_LINE}': .*does not exist") as info:
        load_tasks([NEXT_LINE], corpus=f"text:{tmp_path / 'missing'}")
    assert "\n" not in str(info.value)


@pytest.mark.slow  # the harness indexes its thousands of task files first
def test_harness_task_without_network_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EvalError) as info:
        load_tasks(["arc_easy"])
    assert "Hugging Face Hub" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(EvalError, match="unknown task 'no_such_task'"):
        load_tasks(["no_such_task"])


def test_scores_are_json_ready() -> None:
    from trainables.downstream.evaluate import scores_from_results

    results = {
        "results": {"t": {"alias": "t", "acc,none": 0.5, "acc_stderr,none": 0.1}},
        "n-samples": {"t": {"effective": 9}},
    }
    score = json.loads(json.dumps(scores_from_results(results)["t"].to_dict()))
    assert score == {"task": "t", "metric": "acc", "acc": 0.5, "acc_se": 0.1, "n": 9}


def test_local_task_corpus_obeys_the_data_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "a.py").write_text("x = 1\n" * 50)
    monkeypatch.setenv("LOSSWEEP_DATA_ROOTS", str(root))
    with pytest.raises(EvalError, match="outside the allowed data roots") as info:
        load_tasks([NEXT_LINE], corpus=f"text:{outside}")
    assert "\n" not in str(info.value)
