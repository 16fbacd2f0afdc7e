"""Named sweeps. Each preset is a function of a *scale* (model, data, budget, resources) returning a
``SweepSpec``, so the same study runs tiny on a laptop (the defaults) and full size on a cluster::

    get_preset("oec-lr-sensitivity")                                    # laptop: tiny model, 200 steps
    get_preset("oec-lr-sensitivity", model="oec-16m", tokenizer="bpe:50304", seq_len=2048,
               batch_size=64, steps=100_000, warmup_steps=5000, gpus_per_worker=1)

``apply_overrides`` applies ``--set key=value`` style dotted keys to any spec.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from yaml import YAMLError

from search_spaces.spec.sweep_spec import CORPUS_TO_NAME, SweepSpec, load_yaml
from trainables.losses.registry import BASELINE, BUILTIN_TERMS, coefficient, method_coefficients
from trainables.model.config import GPT2_VOCAB
from trainables.model.presets import PAPER_PRESETS
from trainables.train.config import DEFAULT_TEST_TOKENS

#: The OEC paper's peak learning-rate grid and coefficient grid (docs/papers.md §1).
OEC_LR_GRID = [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
OEC_LAMBDA_GRID = [1e-7, 1e-4, 1e-1, 1e2]

#: The first confirm seed of the presets that compare methods.
CONFIRM_SEED_START = 1000

#: The laptop scale every preset defaults to.
DEFAULT_SCALE: dict[str, Any] = {
    "model": "tiny",
    "model_overrides": {},
    "corpus": "stdlib",
    "tokenizer": "bytes",
    "seq_len": 64,
    "batch_size": 8,
    "eval_tokens": 4096,  # a tenth of a report interval's training cost; the test split gets the default
    "test_tokens": DEFAULT_TEST_TOKENS,
    "sampling": "epoch",
    "steps": 200,
    "warmup_steps": 20,
    "eval_interval": 50,
    "test_interval": 0,
    "micro_batch": None,
    "workers": 1,
    "cpus_per_worker": 1.0,
    "gpus_per_worker": 0.0,
    "max_concurrent_trials": 2,
    "seeds": [0],
    "confirm_seeds": 3,
    "precision": "fp32",
}


def _spec(
    name: str, description: str, scale: Mapping[str, Any], *, compare: bool = False, **search: Any
) -> SweepSpec:
    """A preset's spec at ``scale``; ``compare``: it compares methods, so it confirms on fresh seeds."""
    unknown = sorted(set(scale) - set(DEFAULT_SCALE))
    if unknown:
        raise ValueError(f"unknown scale argument(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_SCALE)}")
    s = {**DEFAULT_SCALE, **scale}
    doc: dict[str, Any] = {
        "name": name,
        "description": description,
        "model": {"preset": s["model"], "overrides": dict(s["model_overrides"])},
        "data": {
            "corpus": s["corpus"],
            "tokenizer": s["tokenizer"],
            "seq_len": s["seq_len"],
            "batch_size": s["batch_size"],
            "eval_tokens": s["eval_tokens"],
            "test_tokens": s["test_tokens"],
            "sampling": s["sampling"],
        },
        "budget": {
            "steps": s["steps"],
            "warmup_steps": s["warmup_steps"],
            "eval_interval": s["eval_interval"],
            "test_interval": s["test_interval"],
            "micro_batch": s["micro_batch"],
        },
        "resources": {
            "workers": s["workers"],
            "cpus_per_worker": s["cpus_per_worker"],
            "gpus_per_worker": s["gpus_per_worker"],
        },
        "max_concurrent_trials": s["max_concurrent_trials"],
        "seeds": list(s["seeds"]),
        "precision": s["precision"],
        **search,
    }
    if compare:
        # Selection seeds are never the measuring seeds: the best of every method is re-run on fresh ones.
        # Fresh seeds, far from the search's, so `--set seeds=[...]` does not collide with them.
        after = max(CONFIRM_SEED_START, max(s["seeds"]) + 1)
        doc["confirm"] = {"seeds": list(range(after, after + int(s["confirm_seeds"]))), "top_k": 1}
    # A preset may leave the corpus to the user (CORPUS_TO_NAME); the spec that runs must name one.
    return SweepSpec.model_validate(doc, context={"preset_template": True})


#: The official OEC code's evaluation protocol: a test loss over 2000 batches of 16 x 2048 tokens every
#: 10,000 steps, training windows drawn at random with replacement, and L0 fixed at 10.83 (its notebook).
OEC_TEST_TOKENS = 2000 * 16 * 2048
OEC_TEST_INTERVAL = 10_000
OEC_L0 = 10.83

#: The OEC paper's training run (docs/papers.md §1): 100k steps of 64 x 2048 tokens = 13.1B tokens, warmup
#: 5000 steps, cosine to 1e-5 (``budget.min_lr``'s default), bf16, GPT-2's padded vocabulary; validation
#: (what the search sees) over 4 batches every 1000 steps, and the official test protocol above.
OEC_PAPER_SCALE: dict[str, Any] = {
    "model": "oec-16m",
    "model_overrides": {"vocab_size": GPT2_VOCAB},
    "corpus": CORPUS_TO_NAME,
    "tokenizer": f"bpe:{GPT2_VOCAB}",
    "seq_len": 2048,
    "batch_size": 64,
    "eval_tokens": 4 * 64 * 2048,
    "test_tokens": OEC_TEST_TOKENS,
    "sampling": "random",
    "steps": 100_000,
    "warmup_steps": 5000,
    "eval_interval": 1000,
    "test_interval": OEC_TEST_INTERVAL,
    "workers": 1,
    "cpus_per_worker": 4.0,
    "gpus_per_worker": 1.0,
    "max_concurrent_trials": 8,
    "precision": "bf16",
}


def oec_lr_sensitivity(**scale: Any) -> SweepSpec:
    return _spec(
        "oec-lr-sensitivity",
        "The OEC paper's LR-sensitivity study: baseline, z-loss (1e-4), mu-loss (1e-4), mu-centering and "
        "soft-capping (30) on the learning-rate grid 3e-4..3e-1, no early stopping; each method's best "
        "learning rate confirmed on three fresh seeds.",
        scale,
        compare=True,
        methods=["baseline", "z_loss", "mu_loss", "mu_centering", "softcap"],
        lr=OEC_LR_GRID,
        coefficients={"z_loss_weight": 1e-4, "mu_loss_weight": 1e-4, "softcap_cap": 30.0},
        search={"algorithm": "grid"},
        scheduler={"name": "none"},
    )


def oec_lambda_robustness(**scale: Any) -> SweepSpec:
    return _spec(
        "oec-lambda-robustness",
        "The OEC paper's lambda-robustness study: z-loss and mu-loss with lambda in {1e-7, 1e-4, 1e-1, 1e2} "
        "on the learning-rate grid 3e-4..3e-1.",
        scale,
        methods=["z_loss", "mu_loss"],
        lr=OEC_LR_GRID,
        coefficients={"z_loss_weight": OEC_LAMBDA_GRID, "mu_loss_weight": OEC_LAMBDA_GRID},
        search={"algorithm": "grid"},
        scheduler={"name": "none"},
    )


def _search_ranges(methods: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The loss registry's search range of every coefficient the methods read."""
    return {name: coefficient(name).search_range() for m in methods for name in method_coefficients(m)}


#: Every built-in term alone, and SimReg with μ-centering (the combination the SimReg paper suggests).
ALL_METHODS = [BASELINE, *BUILTIN_TERMS, "simreg+mu_centering"]


def simreg_tpe(**scale: Any) -> SweepSpec:
    return _spec(
        "simreg-tpe",
        "Optuna TPE over SimReg's weight (loguniform 1e-3..1), temperature (loguniform 0.03..1) and the "
        "learning rate (loguniform 3e-4..3e-1), with ASHA on tokens.",
        scale,
        methods=["simreg"],
        lr={"distribution": "loguniform", "low": 3e-4, "high": 3e-1},
        coefficients=_search_ranges(["simreg"]),
        search={"algorithm": "tpe", "num_samples": 24, "startup_trials": 6},
        scheduler={"name": "asha", "reduction_factor": 3},
    )


def all_methods_tpe(**scale: Any) -> SweepSpec:
    return _spec(
        "all-methods-tpe",
        "Optuna TPE over each method's coefficients and the learning rate, the methods taking the trials in "
        "turn (the same budget for each, baseline included); ASHA on tokens; each method's best confirmed on "
        "three fresh seeds.",
        scale,
        compare=True,
        methods=ALL_METHODS,
        lr={"distribution": "loguniform", "low": 3e-4, "high": 3e-1},
        coefficients=_search_ranges(ALL_METHODS),
        # 5 trials per method, taken in turn: the same budget for each
        search={"algorithm": "tpe", "num_samples": 5 * len(ALL_METHODS), "startup_trials": len(ALL_METHODS)},
        scheduler={"name": "asha", "reduction_factor": 3},
    )


#: The OEC paper's five model sizes, smallest first.
OEC_PAPER_SIZES = PAPER_PRESETS
#: What the paper's study compares, at any size.
_OEC_PAPER_STUDY: dict[str, Any] = {
    "methods": ["baseline", "z_loss", "mu_loss", "mu_centering", "softcap"],
    "lr": OEC_LR_GRID,
    "coefficients": {"z_loss_weight": 1e-4, "mu_loss_weight": 1e-4, "softcap_cap": 30.0},
    "search": {"algorithm": "grid"},
    "scheduler": {"name": "none"},
    "divergence": {"l0": OEC_L0},
}


def oec_paper(**scale: Any) -> SweepSpec:
    return _spec(
        "oec-paper",
        "The OEC paper's study at its own scale, on GPUs: baseline, z-loss (1e-4), mu-loss (1e-4), "
        "mu-centering and soft-capping (30) on the LR grid 3e-4..3e-1, oec-16m, bf16, 100k steps of 64x2048 "
        "tokens (13.1B; budget.scale shrinks it), warmup 5000, cosine to 1e-5; the official protocol: random "
        "windows with replacement, test loss over 2000x16x2048 tokens every 10k steps, L0 = 10.83; each method's "
        "best learning rate confirmed on three fresh seeds; set data.corpus.",
        {**OEC_PAPER_SCALE, **scale},
        compare=True,
        **_OEC_PAPER_STUDY,
    )


def oec_paper_sizes(**scale: Any) -> SweepSpec:
    return _spec(
        "oec-paper-sizes",
        "The OEC paper's study at all five of its sizes as one sweep (oec-16m, oec-29m, oec-57m, oec-109m, "
        "oec-221m): the oec-paper preset with the model size as an axis, one report that sets each size beside "
        "the paper's runs at that size; budget.scale shrinks every size alike; set data.corpus.",
        # The largest size (oec-221m) holds the paper's 64 sequences per GPU in four passes of 16 on 80 GB.
        {**OEC_PAPER_SCALE, "model": list(OEC_PAPER_SIZES), "micro_batch": 16, **scale},
        compare=True,
        **_OEC_PAPER_STUDY,
    )


def demo(**scale: Any) -> SweepSpec:
    # Twelve short trials, two at a time (two minutes on two idle cores: benchmarks/bench_ray_train.py).
    # Measured as shipped: at 3e-3 every method ends at val CE 2.72; at 1e-1 at 3.09-3.20; at 1.0 the
    # runs end at 4.45 (z-loss), 4.79 (soft-cap), 5.72 (mu-centering) and 6.61 (baseline, above
    # L0 = ln 257 = 5.55). A run whose loss passes L0 + 1 nat is flagged in the report ("above L0 at
    # step N"), never stopped: only a non-finite loss ends a run, as in the paper.
    small = {"steps": 120, "warmup_steps": 10, "eval_interval": 30, "seq_len": 64, "batch_size": 8,
             "confirm_seeds": 2}  # fmt: skip
    return _spec(
        "demo",
        "A laptop-sized look at the question (a few minutes on two cores): baseline, z-loss, mu-centering "
        "and soft-capping at a moderate, a large and a far too large learning rate (at 1.0 the loss goes "
        "above L0 early, a recorded flag; runs are never stopped for it); each method's best learning rate "
        "is then re-run on two fresh seeds, which give the verdicts.",
        {**small, **scale},
        compare=True,
        methods=["baseline", "z_loss", "mu_centering", "softcap"],
        lr=[3e-3, 1e-1, 1.0],
        coefficients={"z_loss_weight": 1e-4, "softcap_cap": 30.0},
        search={"algorithm": "grid"},
        scheduler={"name": "none"},
    )


PRESETS: dict[str, Callable[..., SweepSpec]] = {
    "oec-lr-sensitivity": oec_lr_sensitivity,
    "oec-lambda-robustness": oec_lambda_robustness,
    "simreg-tpe": simreg_tpe,
    "all-methods-tpe": all_methods_tpe,
    "oec-paper": oec_paper,
    "oec-paper-sizes": oec_paper_sizes,
    "demo": demo,
}


def list_presets() -> dict[str, str]:
    """Preset name → one-line description."""
    return {name: factory().description for name, factory in PRESETS.items()}


def get_preset(name: str, **scale: Any) -> SweepSpec:
    """The preset ``name`` at ``scale`` (keys of ``DEFAULT_SCALE``)."""
    try:
        factory = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
    return factory(**scale)


# ------------------------------------------------------------------------------------------ overrides
_FREE_MAPS = {("model", "overrides"), ("coefficients",)}  # maps whose keys the spec does not fix


def parse_set_args(items: Iterable[str]) -> dict[str, Any]:
    """``["lr=[1e-3, 1e-2]", "search.algorithm=tpe"]`` → ``{"lr": [0.001, 0.01], ...}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set budget.steps=100")
        try:
            out[key.strip()] = load_yaml(raw) if raw.strip() else ""
        except YAMLError as exc:
            raise ValueError(f"--set {item!r}: the value is not valid YAML ({exc})") from None
    return out


def apply_overrides(spec: SweepSpec, overrides: Mapping[str, Any]) -> SweepSpec:
    """A new, validated spec with each dotted key set (``budget.steps``, ``methods``, ``lr``,
    ``coefficients.z_loss_weight``, ``model.overrides.n_layer``, ``seeds.0`` …). A key the spec does
    not have is a ``KeyError`` naming it and the keys known at that level; a bad value is pydantic's
    ``ValidationError`` naming the field."""
    doc = spec.model_dump(mode="json")
    for dotted, value in overrides.items():
        parts = str(dotted).split(".")
        if not parts or any(not p for p in parts):
            raise KeyError(f"override key {dotted!r} is not a dotted path such as budget.steps")
        node: Any = doc
        fresh = False  # node is an optional section the spec left unset: its model names the keys it takes
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            here = tuple(parts[:depth])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    where = ".".join(here)
                    raise KeyError(f"override {dotted!r}: {where} has {len(node)} item(s); {part!r} is no index")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise KeyError(f"override {dotted!r}: {'.'.join(here)} is a value, not a section")
            if part not in node and here not in _FREE_MAPS and not fresh:
                where = ".".join(here) or "the spec"
                raise KeyError(f"unknown key {dotted!r}: {where} has no {part!r} (known: {', '.join(node)})")
            if last:
                node[part] = value
            else:
                fresh = node.get(part) is None
                if fresh:
                    node[part] = {}
                node = node[part]
        # The budget is steps *or* tokens: setting one clears the other.
        if parts[0] == "budget" and len(parts) == 2 and parts[1] in ("steps", "tokens") and value is not None:
            doc["budget"]["tokens" if parts[1] == "steps" else "steps"] = None
    return SweepSpec.model_validate(doc)
