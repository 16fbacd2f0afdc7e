"""Whether a run compiles its model with ``torch.compile``, and doing it.

``TrainConfig.compile`` is ``True``, ``False`` or ``None`` (the default: on when the run trains on
CUDA, off on CPU, where compiling costs about a minute on two cores for no measured gain, see
BENCHMARKS.md). The resolved value is recorded in the manifest and, when on, every report carries
``compile_s``: the wall time of every training step and evaluation during which Dynamo compiled a
graph (``graphs_compiled`` grew), kept out of the throughput figures. That is the first step, the
second (the first call fills the rotary-table cache, which the second call's guards see), and the
first evaluation (eval mode, no grad).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch-free at import: the manifest (written by the driver) resolves the switch
    from torch import nn


def compile_enabled(setting: bool | None, device_type: str) -> bool:
    """The effective compile switch of a run with ``TrainConfig.compile == setting`` on ``device_type``."""
    return device_type == "cuda" if setting is None else bool(setting)


def maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    """``torch.compile(model)`` when ``enabled``, else ``model`` itself. Compilation is lazy: it
    happens in the first forward (and backward) call, not here."""
    if not enabled:
        return model
    import torch

    return torch.compile(model)  # type: ignore[return-value]


def graphs_compiled() -> int:
    """Graphs Dynamo has compiled in this process so far (its ``unique_graphs`` counter; 0 when the
    counter is not available). A call during which it grows spent its time compiling."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return 0
    return int(counters["stats"]["unique_graphs"])
