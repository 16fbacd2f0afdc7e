"""lossweep's GPT as an lm-evaluation-harness model (``lm_eval.api.model.LM``).

Log-likelihoods are computed as the harness's own Hugging Face model computes them, over lossweep's
tokenizers (``bytes``, ``bpe:N``, ``hf:PATH``): a context's trailing whitespace moves to the continuation,
the pair is encoded whole and split at the context's length, an empty context is the end-of-text token
(which precedes every document in training), and a pair longer than the model's window (the run's
``seq_len``) loses its oldest context tokens; a continuation longer than the window is read in chunks
(``LossweepLM.windows``). Requests are scored in batches of similar length, padded on the right (the
model is causal: padding never reaches a scored position). Rolling log-likelihoods are the
continuation of an end-of-text token, read in the same chunks: the harness's disjoint rolling windows.
``generate_until`` is greedy.

Precision is the model's own (``GPT.precision``/``head_precision``: the trial's); log-softmax runs in
float32 whatever the logits' dtype.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lm_eval.api.model import LM

from trainables.data.tokenizer import Tokenizer
from trainables.downstream.errors import EvalError
from trainables.model.gpt import GPT

Pair = tuple[list[int], list[int]]  # (context ids, continuation ids)


class LossweepLM(LM):
    """``model`` (in eval mode on ``device``) with the ``tokenizer`` it was trained with; ``max_length``
    is the longest window it sees (the run's ``seq_len``)."""

    def __init__(
        self,
        model: GPT,
        tokenizer: Tokenizer,
        *,
        max_length: int,
        batch_size: int = 32,
        device: torch.device | str = "cpu",
        max_gen_toks: int = 128,
    ) -> None:
        super().__init__()
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        self.device_ = torch.device(device)
        self.model = model.to(self.device_).eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = max(1, batch_size)
        self.max_gen_toks = max_gen_toks

    # ------------------------------------------------------------------------------- harness API
    def loglikelihood(self, requests: Sequence[Any]) -> list[tuple[float, bool]]:
        return self.score_pairs([self.encode_pair(*req.args) for req in requests])

    def loglikelihood_rolling(self, requests: Sequence[Any]) -> list[float]:
        texts = [self.tokenizer.encode(req.args[0]) for req in requests]
        scored = iter(self.score_pairs([([self.tokenizer.eot_id], ids) for ids in texts if ids]))
        return [next(scored)[0] if ids else 0.0 for ids in texts]

    @torch.no_grad()  # not inference_mode: the rotary tables it caches must stay usable for training
    def generate_until(self, requests: Sequence[Any]) -> list[str]:
        out = []
        for req in requests:
            context, kwargs = req.args[0], dict(req.args[1] if len(req.args) > 1 else {})
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            budget = int(kwargs.get("max_gen_toks", self.max_gen_toks))
            ids = self.tokenizer.encode(context) or [self.tokenizer.eot_id]
            generated: list[int] = []
            text = ""
            for _ in range(budget):
                window = torch.tensor([(ids + generated)[-self.max_length :]], device=self.device_)
                _, logits = self.model(window)
                next_id = int(logits[0, -1].float().argmax())
                if next_id == self.tokenizer.eot_id:
                    break
                generated.append(next_id)
                text = self.tokenizer.decode(generated)
                if any(stop in text for stop in until):
                    break
            for stop in until:
                text = text.split(stop)[0]
            out.append(text)
        return out

    # ----------------------------------------------------------------------------------- scoring
    def encode_pair(self, context: str, continuation: str) -> Pair:
        """The harness's split of a (context, continuation) request into ids (module docstring)."""
        stripped = context.rstrip()
        continuation = context[len(stripped) :] + continuation
        if not stripped:
            return [self.tokenizer.eot_id], self.tokenizer.encode(continuation)
        whole = self.tokenizer.encode(stripped + continuation)
        n_context = len(self.tokenizer.encode(stripped))
        return whole[:n_context], whole[n_context:]

    def windows(self, context: list[int], continuation: list[int]) -> list[tuple[list[int], int]]:
        """The model inputs that score ``continuation`` after ``context``: ``(ids, n)`` pairs, each
        scoring its last ``n`` positions. The continuation is cut into chunks of at most ``max_length``
        tokens, and each chunk is read with the tokens before it filling the window (the oldest
        dropped): one window for a continuation that fits, the harness's disjoint rolling windows for
        a long text."""
        if not context:
            raise EvalError("a request has no context token (an empty context is the end-of-text token)")
        if not continuation:
            raise EvalError("a request has an empty continuation: nothing to score")
        whole = context + continuation
        out = []
        for a in range(len(context), len(whole), self.max_length):
            b = min(a + self.max_length, len(whole))
            out.append((whole[max(0, b - self.max_length - 1) : b], b - a))
        return out

    @torch.no_grad()  # not inference_mode: the rotary tables it caches must stay usable for training
    def score_pairs(self, pairs: Sequence[Pair]) -> list[tuple[float, bool]]:
        """Sum of log p(continuation token | the tokens before it in its window) and whether every
        continuation token is the argmax, for each (context ids, continuation ids) pair."""
        windows: list[tuple[int, list[int], int]] = []  # (pair, input ids + the last target, scored)
        for i, (context, continuation) in enumerate(pairs):
            windows.extend((i, ids, n) for ids, n in self.windows(context, continuation))
        logprob = [0.0] * len(pairs)
        greedy = [True] * len(pairs)
        order = sorted(range(len(windows)), key=lambda w: -len(windows[w][1]))
        for start in range(0, len(order), self.batch_size):
            batch = [windows[w] for w in order[start : start + self.batch_size]]
            width = max(len(ids) for _, ids, _ in batch)
            ids = torch.full((len(batch), width), self.tokenizer.eot_id, dtype=torch.long)
            for row, (_, tokens, _) in enumerate(batch):
                ids[row, : len(tokens)] = torch.tensor(tokens)
            ids = ids.to(self.device_)
            _, logits = self.model(ids[:, :-1])  # (b, width - 1, V): position t predicts token t + 1
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            for row, (i, tokens, n) in enumerate(batch):
                end = len(tokens) - 1
                scored = logprobs[row, end - n : end]  # (n, V)
                targets = ids[row, end - n + 1 : end + 1]  # (n,)
                logprob[i] += float(scored.gather(-1, targets[:, None]).sum())
                greedy[i] = greedy[i] and bool((scored.argmax(-1) == targets).all())
        return list(zip(logprob, greedy, strict=True))
