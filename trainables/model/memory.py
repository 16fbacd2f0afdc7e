"""How much GPU memory one rank of a trial needs: an analytic estimate, to pack trials on a GPU.

Torch-free. Computed, not measured: ``benchmarks/gpu_check.py`` prints this estimate next to the
measured peak (``torch.cuda.max_memory_allocated``) so that the first GPU run checks it.

Bytes of one rank, training a ``ModelConfig`` on ``tokens = sequences x seq_len`` tokens per step:

- **states** ``16 · N``: float32 parameters, gradients and AdamW's two moments (DDP's gradient
  buckets alias the gradients, ``gradient_as_bucket_view``);
- **activations** saved for the backward pass, per token and layer (C = n_embd, H = SwiGLU width):
  under bf16 autocast ``34·C + 8·H`` — the float32 residual stream before each norm (2 x 4C), the
  bf16 inputs of the four projections (2C + 2C + 2C + 2H), the stacked q/k/v (6C), q and k upcast for
  qk-norm (8C) and cast back for attention (4C), attention's output (2C), the SwiGLU gate/up (4H)
  and silu(gate) (2H); in float32 ``44·C + 16·H``. Flash / memory-efficient attention saves O(T)
  per head, not O(T²). Plus the final norm (6C) and the logits (2V bytes in bf16, 4V in float32);
- **loss transient** on top of all of that at the end of the forward pass: the float32 copy of the
  logits and logsumexp's temporary (8V bytes per token from bf16 logits, 4V from float32 ones) —
  at V = 50304 this is the largest single item at the OEC sizes;
- **overhead** a fixed 1 GiB per process (CUDA context, cuBLAS and NCCL workspaces) and 10 % on
  top of the rest for the caching allocator's fragmentation. Both are assumptions, not measurements.

Gradient accumulation (``micro_batch``) shrinks the activations and the loss transient to one
micro-batch's tokens: the passes run one after another and the gradients accumulate in place.

Not counted: SimReg's similarity blocks (chunked, bounded by its ``chunk_budget``), soft-capping's
extra logit-sized tensors, ``torch.compile``'s fusion (it usually saves less, not more).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainables.model.config import ModelConfig

GIB = 1024**3
#: Usable memory of the GPUs the docs' tables size for (a little under the nominal size: the driver keeps some).
GPU_USABLE_BYTES = {"80 GB": 79 * GIB, "141 GB": 139 * GIB}
PROCESS_OVERHEAD_BYTES = 1 * GIB
FRAGMENTATION = 1.10

_LAYER = {"bf16": (34, 8), "fp32": (44, 16)}  # bytes per token per layer: (x C, x H)
_LOGITS = {"bf16": 2, "fp32": 4}  # bytes per token per vocabulary entry, saved
_LOSS_TRANSIENT = {"bf16": 8, "fp32": 4}  # bytes per token per vocabulary entry, transient


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one rank; ``total`` includes the overhead and the fragmentation margin."""

    states: int
    activations: int
    loss_transient: int
    total: int

    def gib(self) -> float:
        return self.total / GIB


def estimate_rank_memory(
    cfg: ModelConfig, *, sequences: int, seq_len: int, precision: str = "bf16", micro_batch: int | None = None
) -> MemoryEstimate:
    """The estimate for one rank holding ``sequences`` sequences of ``seq_len`` tokens per step
    (the global batch divided by the workers), ``micro_batch`` of them per pass (None: all at once)."""
    if precision not in _LAYER:
        raise ValueError(f"precision must be one of {', '.join(_LAYER)}, got {precision!r}")
    if sequences < 1 or seq_len < 1:
        raise ValueError(f"sequences and seq_len must be >= 1, got {sequences} and {seq_len}")
    if micro_batch is not None and micro_batch < 1:
        raise ValueError(f"micro_batch must be >= 1, got {micro_batch}")
    tokens = min(sequences, micro_batch or sequences) * seq_len  # what one pass holds
    per_c, per_h = _LAYER[precision]
    per_token = cfg.n_layer * (per_c * cfg.n_embd + per_h * cfg.hidden_dim) + 6 * cfg.n_embd
    per_token += _LOGITS[precision] * cfg.vocab_size
    states = 16 * cfg.num_params()
    activations = tokens * per_token
    transient = tokens * _LOSS_TRANSIENT[precision] * cfg.vocab_size
    total = math.ceil((states + activations + transient) * FRAGMENTATION) + PROCESS_OVERHEAD_BYTES
    return MemoryEstimate(states=states, activations=activations, loss_transient=transient, total=total)


def trials_per_gpu(gpu_bytes: int, estimate: MemoryEstimate) -> int:
    """How many one-rank trials of this size fit on a GPU with ``gpu_bytes`` of memory (0: none)."""
    return gpu_bytes // estimate.total


def gpus_per_worker_for(count: int) -> float:
    """The ``gpus_per_worker`` that makes Ray place ``count`` one-rank trials on one GPU."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    return math.floor(1e6 / count) / 1e6  # rounded down, so count x the share never exceeds 1


def fewest_micro_steps(
    cfg: ModelConfig, *, sequences: int, seq_len: int, gpu_bytes: int, precision: str = "bf16"
) -> int | None:
    """The fewest passes (micro-batches dividing ``sequences``) in which one rank's step fits in
    ``gpu_bytes``; None when even one sequence per pass does not fit."""
    for steps in range(1, sequences + 1):
        if sequences % steps:
            continue
        est = estimate_rank_memory(cfg, sequences=sequences, seq_len=seq_len, precision=precision,
                                   micro_batch=sequences // steps)  # fmt: skip
        if est.total <= gpu_bytes:
            return steps
    return None
