"""The training loop of one run, shared by ``lossweep train-local`` and the Ray Train workers.

``TrainingRun`` owns the model, optimizer, schedule, data order and divergence rules of one rank.
Multi-process runs hand in a ``wrap_model`` (e.g. DDP) and a ``reducer`` (``TorchDistReducer``);
every metric that is reported or decides anything is reduced across ranks first, by one rule
(``trainables.train.reduce.combine_ranks``: means weighted by valid-token counts, maxima for extremes and
time), so all ranks report identical rows and stop at the same step.

Under DDP and with gradient accumulation (``DataConfig.micro_batch``) the objective is the one-pass
one exactly: the step's valid tokens ``N`` are counted first over every rank and micro-batch (one
all-reduce of a small tensor that never leaves the device), and each pass's loss is scaled by
``n · W / N`` (its valid tokens, the world size) before backward, so DDP's gradient average is the
token-weighted mean over the whole global batch even when ranks and passes hold different numbers
of valid tokens; DDP all-reduces gradients on the last pass only (``no_sync``). SimReg averages over
its anchors, counted the same way (``trainables/losses/simreg.py``).

One optimizer step: [forward -> CE + terms -> backward] per micro-batch -> clip (1.0) -> [divergence check on the
reduced loss and gradient norm] -> AdamW step -> zero_grad -> [after-step terms: μ-centering]. The
loss terms come in through their hooks (``losses.combine``): no term is known here by name. Same seed ⇒ same initial
weights and the same batches for every method (the paired design of a sweep).

Host synchronisation: on CPU every step brings its metrics to the host and decides divergence before
the optimizer step (``sync_each_step``). On CUDA that would stall the GPU once per step, so the step's
metrics stay on the device and the window's steps are brought over, reduced over ranks and judged in
order at the next report (``_flush``), with the same decisions, the same diverged step and cause,
and the same reported rows. A run that diverges in between keeps computing (on non-finite weights)
until that report, which is wasted time, not a different result; no checkpoint is ever taken of it.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from trainables.data.tokens import BatchSampler, Dataset, EvalWindows, load_dataset
from trainables.model.compile import compile_enabled, graphs_compiled, maybe_compile
from trainables.model.config import ModelConfig
from trainables.model.gpt import GPT
from trainables.model.mfu import device_peak_flops, flops_per_token, mfu_metrics
from trainables.model.presets import model_for_data
from trainables.train.config import TrainConfig
from trainables.train.divergence import DivergenceMonitor
from trainables.train.manifest import DATA_RECORD_KEYS
from trainables.train.optim import build_adamw
from trainables.train.reduce import IdentityReducer, Reducer, combine_rank_rows, combine_ranks
from trainables.train.schedule import WarmupCosine
from trainables.train.transfer import to_device
from trainables.train.window_ce import WindowCE

Row = dict[str, Any]
ReportFn = Callable[[Row], None]

# Diagnostics that are reduced with max instead of the token-weighted mean across ranks.
_MAX_REDUCED = frozenset({"logits_absmax"})


def default_device(config: TrainConfig) -> torch.device:
    if config.use_gpu and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def apply_tf32(allow: bool) -> None:
    """``TrainConfig.allow_tf32``, set by every entry point through the engine (process-wide torch
    flags; they only matter for float32 matmuls on CUDA)."""
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow


def resolve_model_config(config: TrainConfig, data_vocab: int) -> ModelConfig:
    """The preset with the run's overrides; the vocabulary comes from the data unless set larger (the
    service sizes a sweep's model by the same rule, ``model_for_data``)."""
    return model_for_data(config.model, config.model_overrides, data_vocab)


class TrainingRun:
    """One rank of one training run. See the module docstring for the step's order."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
        reducer: Reducer | None = None,
        wrap_model: Callable[[nn.Module], nn.Module] | None = None,
        dataset: Dataset | None = None,
        sync_each_step: bool | None = None,
        mfu_devices: int | None = None,
    ) -> None:
        from trainables.losses import IGNORE_INDEX
        from trainables.losses.combine import after_step_, logit_transform, total_loss

        self._ignore_index = IGNORE_INDEX
        self._total_loss = total_loss
        self._after_step = after_step_
        self.config = config
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device(device) if device is not None else default_device(config)
        if reducer is None and world_size != 1:
            raise ValueError("a run with world_size > 1 needs a reducer (trainables.train.reduce.TorchDistReducer)")
        self.reducer: Reducer = reducer or IdentityReducer()

        self.data = dataset if dataset is not None else load_dataset(config.data)
        d = config.data
        self.sampler = BatchSampler(
            self.data.train,
            seq_len=d.seq_len,
            global_batch=d.batch_size,
            seed=config.seed,
            rank=rank,
            world_size=world_size,
            name=f"corpus {d.corpus!r}",
            sampling=d.sampling,
        )
        # Validation (every report: search, ASHA, divergence, curves) and test (the end, or test_interval):
        # fixed windows spread over each split, in batches of the training's per-rank size.
        local_batch = self.sampler.local_batch
        self.eval_windows = EvalWindows(
            self.data.val,
            seq_len=d.seq_len,
            n_tokens=d.eval_tokens,
            local_batch=local_batch,
            rank=rank,
            world_size=world_size,
            name=f"validation split of corpus {d.corpus!r}",
        )
        self.test_windows = EvalWindows(
            self.data.test,
            seq_len=d.seq_len,
            n_tokens=d.test_tokens,
            local_batch=local_batch,
            rank=rank,
            world_size=world_size,
            name=f"test split of corpus {d.corpus!r}",
        )
        self.eval_s = 0.0  # seconds spent in evaluations (validation and test), for the cost of evaluating
        self.model_config = resolve_model_config(config, self.data.vocab_size)
        try:
            config.loss.check_head(tied=self.model_config.tie_weights)
        except ValueError as exc:
            raise ValueError(f"model_overrides.tie_weights: {exc}") from None
        self.vocab_size = self.model_config.vocab_size
        self.uniform_loss = math.log(self.vocab_size)

        apply_tf32(config.allow_tf32)
        # Initialise on the CPU from a private generator: identical weights on every rank and device.
        generator = torch.Generator().manual_seed(config.seed)
        self.module = GPT(
            self.model_config,
            precision=config.precision,
            head_precision=config.head_precision,
            logit_transform=logit_transform(config.loss),
            generator=generator,
        ).to(self.device)
        self.compiled = compile_enabled(config.compile, self.device.type)
        model = maybe_compile(self.module, self.compiled)
        self.model = wrap_model(model) if wrap_model is not None else model
        # Evaluations bypass the wrapper (DDP): no gradient to synchronise, and ranks may hold one
        # evaluation batch more than others, so no rank may wait in a collective inside forward.
        self.eval_model = model

        o = config.optim
        self.optimizer = build_adamw(self.module, o, self.device)
        self.schedule = WarmupCosine.from_config(o, config.steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        self.divergence = DivergenceMonitor(config.divergence, vocab_size=self.vocab_size, warmup_steps=o.warmup_steps)

        self.step = 0
        self.tokens = 0
        self.tokens_per_step = d.batch_size * d.seq_len
        try:
            self.micro_steps = d.micro_steps(self.sampler.local_batch)
        except ValueError as exc:
            raise ValueError(f"data.micro_batch: {exc}") from None
        self.diverged_step = -1
        self.diverged_cause = ""
        self.last_lr = self.schedule.lr_at(0)
        self._elapsed_before = 0.0
        self._started = time.perf_counter()
        self.sync_each_step = self.device.type != "cuda" if sync_each_step is None else sync_each_step
        self._pending: list[tuple[int, float, torch.Tensor]] = []  # (step, lr, metrics) not yet on the host
        self._pending_keys: list[str] = []
        # Compile time: steps and evaluations during which Dynamo compiled a graph (trainables.model.compile).
        self.compile_s = 0.0
        # MFU: model FLOPs per token against the peak of the devices the ranks train on (None on CPU).
        self.flops_per_token = flops_per_token(self.model_config, d.seq_len)
        peak = device_peak_flops(self.device)
        self.peak_device, self.peak_flops = peak if peak is not None else (None, None)
        self.mfu_devices = mfu_devices if mfu_devices is not None else world_size
        self._reset_window()

    # ------------------------------------------------------------------ training
    def _reset_window(self) -> None:
        self._sums: dict[str, float] = {}
        self._count = 0
        self._window_tokens = 0
        self._window_time = 0.0
        self._window_started: float | None = None  # deferred mode: wall clock of the window's first step

    @property
    def diverged(self) -> bool:
        return self.diverged_step >= 0

    def train_step(self) -> Row:
        """One optimizer step. Returns the step's metrics (reduced over ranks); on divergence the
        step is not applied and ``diverged`` is 1."""
        if self.diverged:
            raise RuntimeError(f"run diverged at step {self.diverged_step} ({self.diverged_cause}); it cannot continue")
        t0 = time.perf_counter()
        graphs = graphs_compiled() if self.compiled else 0
        step = self.step + 1
        self.model.train()
        x, y = self.sampler.batch(self.step)  # (b, T) each, this rank's shard
        x, y = to_device(x, self.device), to_device(y, self.device)
        keys, values = self._forward_backward(x, y)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.config.optim.grad_clip)
        keys = [*keys, "grad_norm"]
        stacked = torch.cat([values[:-1], grad_norm.float().reshape(1), values[-1:]])  # [*keys, n_valid]
        compiling = self.compiled and graphs_compiled() > graphs
        if not self.sync_each_step:
            return self._step_deferred(step, keys, stacked, t0, compiling)
        *numbers, weight = stacked.tolist()  # one host sync per step
        local = dict(zip(keys, numbers, strict=True))
        local.setdefault("train_loss", local["total_loss"])
        values = combine_ranks(self.reducer, local, weight=weight)
        cause = self._check_step(step, values)
        lr = self.optimizer.param_groups[0]["lr"]
        if cause is not None:
            self.optimizer.zero_grad(set_to_none=True)
            self.diverged_step, self.diverged_cause = step, cause
        else:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self._after_step(self.config.loss, self.module)
            self.scheduler.step()
            self.step = step
            self.tokens += self.tokens_per_step
            self._accumulate(values)
            self._window_tokens += self.tokens_per_step
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        dt = time.perf_counter() - t0
        if compiling:  # this step compiled: its time is compile time, not training
            self.compile_s += dt
            if cause is None:
                self._window_tokens -= self.tokens_per_step
        else:
            self._window_time += dt
        self.last_lr = lr
        return {
            **values,
            "step": step,
            "tokens": self.tokens,
            "lr": lr,
            "tokens_per_s": self.tokens_per_step / dt if dt > 0 else 0.0,
            "diverged": int(cause is not None),
            "diverged_cause": cause or "",
        }

    def _check_step(self, step: int, values: Row) -> str | None:
        """The divergence decision for step ``step`` from its rank-reduced metrics (None: go on)."""
        cause = self.divergence.check_step(step, train_loss=values["train_loss"], grad_norm=values["grad_norm"])
        if cause is None and not math.isfinite(values["total_loss"]):
            cause = "nonfinite_loss"
        return cause

    def _accumulate(self, values: Row) -> None:
        for k, v in values.items():
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._count += 1

    def _step_deferred(self, step: int, keys: list[str], stacked: torch.Tensor, t0: float, compiling: bool) -> Row:
        """The rest of ``train_step`` without a host sync: the step is applied, its metrics wait on
        the device for ``_flush``. The returned row has no loss values (they are not on the host)."""
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._after_step(self.config.loss, self.module)
        self.scheduler.step()
        self._pending.append((step, lr, stacked))
        self._pending_keys = keys
        self.step = step
        self.tokens += self.tokens_per_step
        self.last_lr = lr
        if self._window_started is None:
            self._window_started = t0
        if compiling:  # a sync only on the few steps that compiled: their time is compile time
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            now = time.perf_counter()
            self.compile_s += now - t0
            self._window_time += t0 - self._window_started  # the window's earlier steps, as queued by t0
            self._window_started = now
        else:
            self._window_tokens += self.tokens_per_step
        return {"step": step, "tokens": self.tokens, "lr": lr, "diverged": 0, "diverged_cause": ""}

    def _flush(self) -> Row | None:
        """Deferred mode: the window's per-step metrics to the host in one copy, reduced over ranks in
        one call, and judged step by step as ``train_step`` would have. Returns the base of the
        diverged row when a step diverged (the run's counters are then set back to the step before
        it, as if the run had stopped there), else None."""
        if not self._pending:
            return None
        pending, self._pending = self._pending, []
        matrix = torch.stack([metrics for _, _, metrics in pending]).tolist()  # the window's one host sync
        if self._window_started is not None:
            self._window_time += time.perf_counter() - self._window_started
            self._window_started = None
        keys = self._pending_keys
        rows = [dict(zip(keys, numbers, strict=True)) for *numbers, _ in matrix]
        reduced = combine_rank_rows(self.reducer, rows, [weight for *_, weight in matrix])  # one all-reduce
        tokens_before = self.tokens - len(pending) * self.tokens_per_step
        for i, (step, lr, _) in enumerate(pending):
            values = reduced[i]
            values.setdefault("train_loss", values["total_loss"])
            cause = self._check_step(step, values)
            if cause is not None:
                self.diverged_step, self.diverged_cause = step, cause
                self.step, self.tokens, self.last_lr = step - 1, tokens_before + i * self.tokens_per_step, lr
                return {**values, "step": step, "tokens": self.tokens, "lr": lr}
            self._accumulate(values)
        return None

    def _forward_backward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[list[str], torch.Tensor]:
        """Forward and backward passes over this rank's share of the step, ``micro_steps`` of them, with
        DDP's gradient all-reduce only on the last (``no_sync`` before it). Returns the metric names and
        ``[*values, n_valid]`` on the device: this rank's token-weighted means over its passes and its
        valid tokens (no host sync).

        The objective is the one-pass one exactly: with the step's valid tokens ``N`` counted
        beforehand over every rank and pass (one on-device all-reduce), each pass's loss (a mean over
        its ``n`` valid tokens) is scaled by ``n · W / N`` before backward, so the accumulated gradient,
        once DDP averages it over the ``W`` ranks, is the mean over all valid tokens of the global
        batch; penalties that average over other units get their step totals too (``combine.StepTotals``).
        With one rank and one pass nothing is scaled."""
        from trainables.losses.combine import local_counts, step_totals

        parts = self.micro_steps
        size = x.shape[0] // parts  # whole sequences per pass: SimReg's contrast set stays within one
        xs, ys = x.split(size), y.split(size)
        totals = None
        if parts > 1 or self.world_size > 1:
            counts = torch.stack([local_counts(self.config.loss, part) for part in ys])  # [M, 1 + K]
            totals = step_totals(self.config.loss, self.reducer.sum_tensor(counts.sum(dim=0)))
        rows: list[torch.Tensor] = []
        keys: list[str] = []
        for i, (x_m, y_m) in enumerate(zip(xs, ys, strict=True)):
            last = i == parts - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.model, "no_sync") else self.model.no_sync()
            with sync:
                hidden, logits = self.model(x_m)  # (b, T, C), (b, T, V)
                total, terms = self._total_loss(
                    self.config.loss, logits=logits, labels=y_m, hidden=hidden, w_out=self.module.w_out, totals=totals
                )
                if totals is None:
                    n_valid = (y_m != self._ignore_index).sum()
                    total.backward()
                else:
                    n_valid, n_total = counts[i, 0], totals.n_valid.to(torch.float32)
                    share = n_valid.to(torch.float32) * self.world_size / n_total.clamp_min(1)
                    (total * torch.where(n_total > 0, share, 1.0 / parts)).backward()
            keys = [*terms, "total_loss"]
            rows.append(torch.stack([*(terms[k].float() for k in terms), total.detach().float(), n_valid.float()]))
        if parts == 1:
            return keys, rows[0]
        matrix = torch.stack(rows)  # [M, K + 1]: each pass's means and its valid tokens
        weights, n_rank = matrix[:, -1], matrix[:, -1].sum()
        weighted = (matrix[:, :-1] * weights.unsqueeze(1)).sum(dim=0) / n_rank.clamp_min(1)
        # no valid token on this rank: plain means over its passes (what one pass would report)
        means = torch.where(n_rank > 0, weighted, matrix[:, :-1].mean(dim=0))
        return keys, torch.cat([means, n_rank.reshape(1)])

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self) -> Row:
        """Validation CE without any penalty (``val_loss``) and its standard error over windows
        (``val_ce_se``) on the fixed validation windows, plus the logit statistics over the same tokens
        and the output-embedding diagnostics (``trainables.model.metrics``)."""
        from trainables.model.metrics import LogitStats, embedding_stats

        t0 = time.perf_counter()
        self.eval_model.eval()
        ce = WindowCE(self.device)
        stats = LogitStats()
        n_tokens = 0
        for x, y in self.eval_windows:
            x, y = x.to(self.device), y.to(self.device)
            _, logits = self.eval_model(x)  # (b, T, V)
            ce.add(logits, y)
            stats.add(logits, y)
            n_tokens += y.numel()  # evaluation windows hold no padding
        mean, se, _ = ce.result(self.reducer)
        diag = {**stats.compute(), **embedding_stats(self.module.w_out)}
        maxed = {k: v for k, v in diag.items() if k in _MAX_REDUCED}
        meaned = {k: v for k, v in diag.items() if k not in _MAX_REDUCED}
        row = combine_ranks(self.reducer, meaned, weight=float(n_tokens), maxima=maxed)
        self.eval_s += time.perf_counter() - t0
        return {"val_loss": mean, "val_ce_se": se, **row}

    @torch.no_grad()
    def evaluate_test(self) -> Row:
        """CE without any penalty on the fixed test windows: ``test_ce``, its standard error over windows
        ``test_ce_se`` and the tokens it covers ``test_tokens``. Nothing the run decides reads it."""
        t0 = time.perf_counter()
        self.eval_model.eval()
        ce = WindowCE(self.device)
        for x, y in self.test_windows:
            _, logits = self.eval_model(x.to(self.device))
            ce.add(logits, y.to(self.device))
        mean, se, tokens = ce.result(self.reducer)
        self.eval_s += time.perf_counter() - t0
        return {"test_ce": mean, "test_ce_se": se, "test_tokens": tokens}

    def data_record(self) -> dict[str, Any]:
        """What a manifest records of the data (``trainables.train.manifest.DATA_RECORD_KEYS``): each split's
        tokens, and the windows and tokens of each evaluation (over all ranks)."""
        evaluation = {
            name: {"windows": w.num_windows, "tokens": w.num_tokens}
            for name, w in (("val", self.eval_windows), ("test", self.test_windows))
        }
        return dict(zip(DATA_RECORD_KEYS, (self.data.split_tokens(), evaluation), strict=True))

    def test_due(self) -> bool:
        """Whether the report at the current step evaluates the test split: at the end of the run, and
        every ``test_interval`` steps when that is set."""
        interval = self.config.test_interval
        return self.step >= self.config.steps or (interval > 0 and self.step % interval == 0)

    # ------------------------------------------------------------------ reports
    def elapsed(self) -> float:
        return self._elapsed_before + time.perf_counter() - self._started

    def _timing(self) -> Row:
        # The slowest rank sets the pace; reducing also makes every rank report the same row.
        maxima = {"window_time": self._window_time, "elapsed": self.elapsed(), "compile": self.compile_s}
        if self.device.type == "cuda":
            maxima["gpu_mem"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        t = combine_ranks(self.reducer, {}, weight=0.0, maxima=maxima)
        tps = self._window_tokens / t["window_time"] if t["window_time"] > 0 else 0.0
        out: Row = {"tokens_per_s": tps, "elapsed_s": t["elapsed"]}
        if self.compiled:
            out["compile_s"] = t["compile"]
        if self.device.type == "cuda":  # MFU and device memory are GPU figures: omitted on CPU
            out["gpu_mem_peak_gib"] = t["gpu_mem"]  # the largest rank's peak since the run started
            out.update(
                mfu_metrics(
                    flops_per_token=self.flops_per_token,
                    tokens_per_s=tps,
                    peak_flops_per_device=self.peak_flops,
                    devices=self.mfu_devices,
                )
            )
        return out

    def report(self) -> Row:
        """Evaluates and returns one report row (and applies the validation divergence rule)."""
        diverged = self._flush()
        if diverged is not None:
            return self._diverged_row(diverged)
        row: Row = {"step": self.step, "tokens": self.tokens, "lr": self.last_lr}
        means = {k: v / self._count for k, v in self._sums.items()} if self._count else {}
        row.update(means)
        t0, graphs = time.perf_counter(), graphs_compiled() if self.compiled else 0
        row.update(self.evaluate())
        if self.compiled and graphs_compiled() > graphs:  # the first evaluation compiles the eval-mode graph
            self.compile_s += time.perf_counter() - t0
        row.update(self._timing())
        cause = self.divergence.check_eval(self.step, val_loss=row["val_loss"])
        row.update(self._l0_fields())
        if cause is not None:
            self.diverged_step, self.diverged_cause = self.step, cause
            return self._diverged_row(row)
        row.update({"diverged": 0, "diverged_step": -1, "diverged_cause": ""})
        if self.test_due():  # after every decision of this report: the test split informs none of them
            row.update(self.evaluate_test())
        row["eval_s"] = combine_ranks(self.reducer, {}, weight=0.0, maxima={"eval": self.eval_s})["eval"]
        self._reset_window()
        return row

    def _diverged_row(self, base: Row | None = None) -> Row:
        row: Row = dict(base or {})
        row.update({"step": self.diverged_step, "tokens": self.tokens, "lr": self.last_lr})
        for k, v in list(row.items()):  # NaN/inf cannot go to Tune or Optuna: drop them
            if isinstance(v, float) and not math.isfinite(v):
                row[k] = None
        row["val_loss"] = self.divergence.l0  # the finite sentinel L0
        row.update(self._timing())
        row.update(self._l0_fields())
        row.update({"diverged": 1, "diverged_step": self.diverged_step, "diverged_cause": self.diverged_cause})
        return row

    def _l0_fields(self) -> Row:
        """The run's ``L0`` and the recorded (never stopping) flag of DivergenceConfig.val_margin."""
        return {"l0": self.divergence.l0, "above_l0_step": self.divergence.above_l0_step}

    def run(self, on_report: ReportFn, on_step: Callable[[Row], None] | None = None) -> Row:
        """Trains to ``config.steps``, reporting every ``eval_interval`` steps and at the last step.
        A divergence ends the run with one last ``diverged=1`` row; no exception is raised."""
        cfg = self.config
        row: Row | None = None
        if self.step == 0 and self.divergence.needs_initial_loss:
            self.divergence.set_initial_loss(self.evaluate()["val_loss"])  # L0 measured before step 1
        while self.step < cfg.steps:
            out = self.train_step()
            if on_step is not None:
                on_step(out)
            if self.diverged:
                row = self._diverged_row({k: v for k, v in out.items() if k not in ("diverged", "diverged_cause")})
                on_report(row)
                return row
            if self.step % cfg.eval_interval == 0 or self.step == cfg.steps:
                row = self.report()
                on_report(row)
                if self.diverged:
                    return row
        if row is None:  # resumed at the end: report the final state once more
            row = self.report()
            on_report(row)
        return row

    # -------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit: weights, optimizer, schedule, counters, the
        current report window, divergence state and RNG states (the data order needs only the step)."""
        self._flush()  # deferred mode: a checkpoint holds no step whose metrics are still on the device
        return {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "tokens": self.tokens,
            "last_lr": self.last_lr,
            "sampler": self.sampler.state_dict(),
            "divergence": self.divergence.state_dict(),
            "window": {
                "sums": dict(self._sums),
                "count": self._count,
                "tokens": self._window_tokens,
                "time": self._window_time,
            },
            "elapsed_s": self.elapsed(),
            "eval_s": self.eval_s,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
            "config_hash": self.config.config_hash(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.load_state_dict(state["sampler"])
        self.divergence.load_state_dict(state["divergence"])
        self.step = int(state["step"])
        self.tokens = int(state["tokens"])
        self.last_lr = float(state["last_lr"])
        w = state["window"]
        self._sums, self._count = dict(w["sums"]), int(w["count"])
        self._window_tokens, self._window_time = int(w["tokens"]), float(w["time"])
        self._window_started = None
        self._elapsed_before = float(state["elapsed_s"])
        self.eval_s = float(state.get("eval_s", 0.0))
        self._started = time.perf_counter()
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
