"""Loss terms of lossweep: cross entropy plus z-loss, μ-loss, SimReg; soft-capping; μ-centering.

The functional API is loaded lazily (PEP 562) so that importing this package or the torch-free
``trainables.losses.config`` / ``trainables.losses.registry`` (the service, the sweep spec) never pulls
in torch::

    from trainables.losses import cross_entropy, z_loss, mu_loss, simreg_loss, softcap
    from trainables.losses import center_output_embeddings_, total_loss, LossConfig

Every function ignores labels equal to -100, averages over valid tokens only and computes in float32
(half-precision inputs are upcast). SimReg's exact form is this project's interpretation of the
paper (see ``trainables/losses/simreg.py`` and docs/losses.md). Which terms exist, with which
coefficients, is the registry's (``trainables.losses.registry``).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainables.losses.combine import total_loss
    from trainables.losses.config import LossConfig, LossConfigError, TermConfig
    from trainables.losses.cross_entropy import IGNORE_INDEX, cross_entropy, cross_entropy_and_log_z
    from trainables.losses.mu_centering import center_output_embeddings_
    from trainables.losses.mu_loss import mu_loss
    from trainables.losses.registry import TERMS, get_term
    from trainables.losses.simreg import simreg_loss
    from trainables.losses.softcap import softcap
    from trainables.losses.term import Coefficient, Term
    from trainables.losses.z_loss import z_loss

# Lazy as well: the registry loads the installed plugins, and ``trainables.losses.plugins`` must be
# importable on its own (the CLI catches its error around everything that reads the registry).
_LAZY: dict[str, str] = {
    "LossConfig": "trainables.losses.config",
    "LossConfigError": "trainables.losses.config",
    "TermConfig": "trainables.losses.config",
    "TERMS": "trainables.losses.registry",
    "get_term": "trainables.losses.registry",
    "Coefficient": "trainables.losses.term",
    "Term": "trainables.losses.term",
    "cross_entropy": "trainables.losses.cross_entropy",
    "cross_entropy_and_log_z": "trainables.losses.cross_entropy",
    "IGNORE_INDEX": "trainables.losses.cross_entropy",
    "z_loss": "trainables.losses.z_loss",
    "mu_loss": "trainables.losses.mu_loss",
    "center_output_embeddings_": "trainables.losses.mu_centering",
    "simreg_loss": "trainables.losses.simreg",
    "softcap": "trainables.losses.softcap",
    "total_loss": "trainables.losses.combine",
}

__all__ = [
    "IGNORE_INDEX",
    "TERMS",
    "Coefficient",
    "LossConfig",
    "LossConfigError",
    "Term",
    "TermConfig",
    "center_output_embeddings_",
    "cross_entropy",
    "cross_entropy_and_log_z",
    "get_term",
    "mu_loss",
    "simreg_loss",
    "softcap",
    "total_loss",
    "z_loss",
]


class _Package(types.ModuleType):
    """Keeps the public functions bound when their same-named submodules are imported.

    ``z_loss``, ``mu_loss``, ``softcap`` and ``cross_entropy`` are both functions and modules of this
    package, and every trial imports those modules (the registry's hooks live there); importing a
    submodule makes Python set the package attribute to the module, which would turn
    ``from trainables.losses import cross_entropy`` (the engine's evaluation) into a module. The
    function wins here; reach a module through ``importlib.import_module`` or
    ``from trainables.losses.softcap import ...``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}" and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
