"""Where lossweep keeps what it derives on a node (token caches, staged shard sets, Optuna journals):
``$LOSSWEEP_CACHE_DIR``, else ``~/.cache/lossweep``."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "LOSSWEEP_CACHE_DIR"


def default_cache_root() -> Path:
    env = os.environ.get(ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lossweep"
