"""The ``TorchTrainer`` of a lossweep run: Ray's own, less the one per-run actor it never uses.

Ray Train V2 gives every run a ``DatasetsCallback``, which starts a ``DatasetManager`` actor when the
worker group starts — one more Python process that imports Ray Data (about a second of CPU and 200 MB
of memory) — whether or not the trainer was given any datasets. lossweep's workers read their token
files themselves (``trainables.data.tokens``) and pass none, so a run without datasets drops that callback.
Everything else (controller, placement group and its cleaner, the workers, the DDP process group,
reports, checkpoints, failure handling) is Ray's, unchanged; a run given datasets keeps the callback.
"""

from __future__ import annotations

from typing import Any

from ray.train.torch import TorchTrainer


class LeanTorchTrainer(TorchTrainer):
    """``TorchTrainer`` without the dataset manager when it has no datasets."""

    def _create_default_callbacks(self) -> list[Any]:
        callbacks = super()._create_default_callbacks()
        if self.datasets:
            return callbacks
        from ray.train.v2._internal.callbacks.datasets import DatasetsCallback

        return [c for c in callbacks if not isinstance(c, DatasetsCallback)]
