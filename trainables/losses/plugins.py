"""Loss terms from installed packages: the entry-point group ``lossweep.losses``.

A package declares each term as an entry point whose name is the term's name and whose object is a
``Term`` (``trainables.losses.term``)::

    [project.entry-points."lossweep.losses"]
    logit_l1 = "my_losses.declare:LOGIT_L1"

The declaring module is imported wherever the registry is (the service too), so it must not import
torch: the hooks live in the module named by ``Term.implementation``, imported on first use. docs/losses.md
has a complete example package.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points

from trainables.losses.term import Term

GROUP = "lossweep.losses"


class PluginError(RuntimeError):
    """A broken loss plugin; the message names the entry point and its distribution."""


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    name = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    return f"plugin {ep.name!r} = {ep.value!r} from {name} (entry-point group {GROUP!r})"


def load_plugins(builtin: Mapping[str, Term], found: Iterable[EntryPoint] | None = None) -> dict[str, Term]:
    """The terms the installed plugins declare, in name order; a ``PluginError`` for a term that fails
    to import, is not a ``Term``, is named differently from its entry point or clashes with another."""
    eps = sorted(entry_points(group=GROUP) if found is None else found, key=lambda ep: ep.name)
    out: dict[str, Term] = {}
    for ep in eps:
        where = _origin(ep)
        try:
            term = ep.load()
        except Exception as exc:  # any failure of foreign code is reported as the plugin's
            raise PluginError(f"{where}: import failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(term, Term):
            raise PluginError(f"{where}: must name a trainables.losses.term.Term, got {type(term).__name__}")
        if term.name != ep.name:
            raise PluginError(f"{where}: the entry point's name must be the term's name {term.name!r}")
        if term.name in builtin:
            raise PluginError(f"{where}: {term.name!r} is a built-in loss term; choose another name")
        if term.name in out:
            raise PluginError(f"{where}: {term.name!r} is declared by two plugins")
        dist = getattr(ep, "dist", None)
        out[term.name] = dataclasses.replace(term, source=f"plugin {dist.name if dist else ep.value}")
    return out
