"""lossweep's GPT as an lm-eval model: log-likelihoods against a slow reference that runs the model on
one prefix at a time and takes the log-softmax of its float32 logits in float64 (the model's head is
float32 by construction, so float64 can only start at the logits)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("lm_eval")

from trainables.data.tokenizer import ByteTokenizer
from trainables.downstream.errors import EvalError
from trainables.downstream.lm import LossweepLM
from trainables.model.gpt import GPT
from trainables.model.presets import model_preset

WINDOW = 16


def _model(seed: int = 0) -> GPT:
    return GPT(model_preset("tiny", vocab_size=257), generator=torch.Generator().manual_seed(seed)).eval()


def _reference(model: GPT, context: list[int], continuation: list[int], window: int) -> float:
    """Sum over continuation tokens of log p(token | the tokens before it), each token read with the
    model run on its own prefix: the window is the last ``window`` + 1 tokens, or, for a continuation
    longer than the window, each chunk of ``window`` continuation tokens with the tokens before it."""
    whole = context + continuation
    total = 0.0
    with torch.no_grad():
        for a in range(len(context), len(whole), window):
            b = min(a + window, len(whole))
            start = max(0, b - window - 1)
            for j in range(a, b):
                prefix = torch.tensor([whole[start:j]])
                _, logits = model(prefix)
                total += float(torch.log_softmax(logits[0, -1].double(), -1)[whole[j]])
    return total


def _random_ids(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(257) for _ in range(n)]


@pytest.mark.parametrize(
    ("n_context", "n_continuation"),
    [(5, 3), (40, 4), (30, WINDOW), (3, 2 * WINDOW + 5)],
    ids=["fits", "context-truncated", "truncated-full-window", "continuation-chunked"],
)
def test_loglikelihood_equals_sum_of_token_logprobs(n_context: int, n_continuation: int) -> None:
    rng = random.Random(n_context * 1000 + n_continuation)
    model = _model()
    lm = LossweepLM(model, ByteTokenizer(), max_length=WINDOW, batch_size=4)
    pairs = [(_random_ids(rng, n_context), _random_ids(rng, n_continuation)) for _ in range(2)]
    got = lm.score_pairs(pairs)
    for (context, continuation), (logprob, _) in zip(pairs, got, strict=True):
        expected = _reference(model, context, continuation, WINDOW)
        # float32 log-softmax summed against float64: agreement to float32 rounding
        assert logprob == pytest.approx(expected, rel=1e-5, abs=1e-3)


def test_batching_and_padding_change_nothing() -> None:
    rng = random.Random(7)
    model = _model()
    pairs = [(_random_ids(rng, rng.randrange(1, 50)), _random_ids(rng, rng.randrange(1, 30))) for _ in range(9)]
    one = LossweepLM(model, ByteTokenizer(), max_length=WINDOW, batch_size=1).score_pairs(pairs)
    many = LossweepLM(model, ByteTokenizer(), max_length=WINDOW, batch_size=8).score_pairs(pairs)
    for (a, ga), (b, gb) in zip(one, many, strict=True):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-4) and ga == gb


def test_is_greedy_when_every_token_is_the_argmax() -> None:
    model = _model()
    lm = LossweepLM(model, ByteTokenizer(), max_length=WINDOW)
    context = [10, 20, 30]
    greedy = list(context)
    with torch.no_grad():
        for _ in range(4):
            _, logits = model(torch.tensor([greedy]))
            greedy.append(int(logits[0, -1].argmax()))
    continuation = greedy[len(context) :]
    (_, is_greedy), (_, not_greedy) = lm.score_pairs(
        [(context, continuation), (context, [*continuation[:-1], (continuation[-1] + 1) % 257])]
    )
    assert is_greedy and not not_greedy


def test_harness_requests_text_and_rolling() -> None:
    model = _model()
    tok = ByteTokenizer()
    lm = LossweepLM(model, tok, max_length=WINDOW)
    # a context's trailing space moves to the continuation, as the harness's own models do
    assert lm.encode_pair("def f(x): ", "return x") == (tok.encode("def f(x):"), tok.encode(" return x"))
    assert lm.encode_pair("", "abc") == ([tok.eot_id], tok.encode("abc"))
    (logprob, _), = lm.loglikelihood([SimpleNamespace(args=("import os\n", "import sys"))])
    expected = _reference(model, tok.encode("import os"), tok.encode("\nimport sys"), WINDOW)
    assert logprob == pytest.approx(expected, rel=1e-5, abs=1e-3)
    text = "class A:\n    pass\n" * 2  # 36 bytes: three windows of 16
    (rolling,) = lm.loglikelihood_rolling([SimpleNamespace(args=(text,))])
    assert rolling == pytest.approx(_reference(model, [tok.eot_id], tok.encode(text), WINDOW), rel=1e-5, abs=1e-3)
    assert lm.loglikelihood_rolling([SimpleNamespace(args=("",))]) == [0.0]


def test_greedy_generation_stops_at_until() -> None:
    model = _model()
    lm = LossweepLM(model, ByteTokenizer(), max_length=WINDOW)
    (free,) = lm.generate_until([SimpleNamespace(args=("x = ", {"max_gen_toks": 6}))])
    assert 0 < len(free.encode()) <= 6 * 4
    stop = free[:1]
    (cut,) = lm.generate_until([SimpleNamespace(args=("x = ", {"max_gen_toks": 6, "until": [stop]}))])
    assert cut == ""


def test_empty_continuation_is_refused_in_one_line() -> None:
    lm = LossweepLM(_model(), ByteTokenizer(), max_length=WINDOW)
    with pytest.raises(EvalError, match="empty continuation"):
        lm.score_pairs([([1, 2], [])])


def test_bpe_pairs_and_bf16_model_against_the_reference() -> None:
    from trainables.data.tokenizer import BPETokenizer

    docs = ["def add(a, b):\n    return a + b\n", "import os\nimport sys\n", "for i in range(10):\n    print(i)\n"] * 20
    tok = BPETokenizer.train(docs, 300)
    model = GPT(model_preset("tiny", vocab_size=tok.vocab_size), generator=torch.Generator().manual_seed(0))
    fp32 = LossweepLM(model.eval(), tok, max_length=WINDOW)
    context, continuation = fp32.encode_pair("for i in range(10): ", "print(i)")
    assert tok.decode(context + continuation) == "for i in range(10): print(i)"
    (logprob, _), = fp32.score_pairs([(context, continuation)])
    assert logprob == pytest.approx(_reference(fp32.model, context, continuation, WINDOW), rel=1e-5, abs=1e-3)
    # the trial's precision: a bf16 body and head, against the same model run one prefix at a time
    bf16 = GPT(model_preset("tiny", vocab_size=257), precision="bf16", generator=torch.Generator().manual_seed(0))
    low = LossweepLM(bf16.eval(), ByteTokenizer(), max_length=WINDOW, batch_size=4)
    ids = list(range(60, 90))
    (got, _), = low.score_pairs([(ids[:10], ids[10:])])
    assert got == pytest.approx(_reference(bf16, ids[:10], ids[10:], WINDOW), rel=2e-2)
