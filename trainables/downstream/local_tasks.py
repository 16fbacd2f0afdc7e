"""Tasks that ship with lossweep and need no network: their data is generated from a corpus.

``lossweep_next_line`` — multiple choice: given the lines of a document before a position, pick the line
that comes next among four, the true one and three drawn from other documents. Generated from the
corpus's validation documents (never trained on), ``stdlib`` by default (the standard library, present
everywhere), with a fixed seed: the same corpus gives the same questions on every machine. The
distractors are other lines of the same length as the true one, so the choice's log-likelihood is not
decided by its length (a sum over more bytes is lower whatever they say) and a model that knows nothing
is right one time in four: chance is 25 %. The harness scores it (``acc``: the choice with the highest
log-likelihood; ``acc_norm``: per byte).

A ``text:PATH`` corpus is read through the same loader as training data, so the service's data roots
apply to it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

NEXT_LINE = "lossweep_next_line"
#: The local tasks, by name.
LOCAL_TASKS: tuple[str, ...] = (NEXT_LINE,)
#: Questions per task (``eval.limit`` evaluates the first N).
NEXT_LINE_SIZE = 1000
NEXT_LINE_CHOICES = 4
_CONTEXT_LINES = 8  # lines of the document shown before the blank
_MIN_CHARS, _MAX_CHARS = 12, 100  # a line worth asking about: not a bracket, not a wall of text
_SEED = 1234


@dataclass(frozen=True)
class _Line:
    doc: int
    index: int  # in the document's lines
    text: str


def _candidates(docs: tuple[str, ...]) -> Iterator[tuple[list[str], _Line]]:
    for d, doc in enumerate(docs):
        lines = doc.splitlines()
        for i, line in enumerate(lines):
            if i >= 2 and _MIN_CHARS <= len(line.strip()) and len(line) <= _MAX_CHARS:
                yield lines, _Line(d, i, line.rstrip())


def next_line_docs(corpus: str = "stdlib", size: int = NEXT_LINE_SIZE) -> list[dict[str, Any]]:
    """The questions: ``{"context", "choices", "label"}``, ``size`` of them (fewer when the corpus's
    validation split is small). Raises ``trainables.data.corpus.CorpusError`` for a corpus that cannot be read."""
    from trainables.data.corpus import CorpusError, TextCorpus, load_corpus

    loaded = load_corpus(corpus)
    if not isinstance(loaded, TextCorpus):
        raise CorpusError(f"corpus {corpus!r} is pre-tokenized: {NEXT_LINE} needs text")
    docs = loaded.val or loaded.train
    pool = [(lines, line) for lines, line in _candidates(docs)]
    by_length: dict[int, list[str]] = {}
    for _, line in pool:
        by_length.setdefault(len(line.text), []).append(line.text)
    rng = random.Random(_SEED)
    out: list[dict[str, Any]] = []
    for lines, line in rng.sample(pool, min(size, len(pool))):
        same = [t for t in dict.fromkeys(by_length[len(line.text)]) if t != line.text]
        if len(same) < NEXT_LINE_CHOICES - 1:
            continue  # too few lines of its length to hide it among
        distractors = rng.sample(same, NEXT_LINE_CHOICES - 1)
        label = rng.randrange(NEXT_LINE_CHOICES)
        choices = [*distractors[:label], line.text, *distractors[label:]]
        context = "\n".join(lines[max(0, line.index - _CONTEXT_LINES) : line.index]) + "\n"
        out.append({"context": context, "choices": choices, "label": label})
    return out


def _doc_to_text(doc: dict[str, Any]) -> str:
    return str(doc["context"])


def _doc_to_choice(doc: dict[str, Any]) -> list[str]:
    return list(doc["choices"])


def _doc_to_target(doc: dict[str, Any]) -> int:
    return int(doc["label"])


def build_local_task(name: str, *, corpus: str = "stdlib") -> Any:
    """The harness task (``lm_eval.api.task.ConfigurableTask``) of a local task name."""
    if name != NEXT_LINE:
        raise KeyError(name)
    from lm_eval.api.task import ConfigurableTask

    def dataset(**_: Any) -> Any:
        import datasets

        return datasets.DatasetDict({"test": datasets.Dataset.from_list(next_line_docs(corpus))})

    return ConfigurableTask(
        config={
            "task": NEXT_LINE,
            "custom_dataset": dataset,
            "test_split": "test",
            "output_type": "multiple_choice",
            "doc_to_text": _doc_to_text,
            "doc_to_choice": _doc_to_choice,
            "doc_to_target": _doc_to_target,
            "target_delimiter": "",
            "num_fewshot": 0,
            "metric_list": [
                {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
            ],
            "metadata": {"version": 1, "corpus": corpus},
        }
    )
