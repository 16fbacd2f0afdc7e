"""The sweep spec: one pydantic model, the same document as a YAML file (CLI) and a JSON body (REST).

A spec says which loss methods are compared, over which learning rates and coefficients, how the
search proceeds (grid, random, Optuna TPE), whether ASHA stops weak trials early, with which seeds,
and what each trial may hold. Every hyperparameter is a fixed number, a list (a grid axis, or the
choices of a categorical) or a range (``{"distribution": "loguniform", "low": 1e-4, "high": 1e-1}``).

Validation names the field and the problem. Three checks depend on where the spec will run and read a
pydantic validation context: ``max_trials`` (overrides the spec's own cap), ``cluster_resources``
(a node's resources, or a list of them: a trial whose worker no node can hold is refused) and
``preset_template`` (a preset's own spec may leave ``data.corpus`` as ``CORPUS_TO_NAME``; any spec that
is run must name one)::

    SweepSpec.model_validate(doc, context={"max_trials": 200, "cluster_resources": [{"CPU": 8}]})

Torch-free: the service validates specs without loading torch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from search_spaces.spec.setting_fields import run_settings, section_model
from search_spaces.spec.tracking_spec import TrackingSpec
from trainables.downstream.defaults import DEFAULT_EVAL_BATCH, DEFAULT_TASK_CORPUS, EvalTarget
from trainables.losses.config import LossConfig, LossConfigError
from trainables.losses.registry import BASELINE, coefficient, method_coefficients
from trainables.model.presets import MODEL_PRESETS, model_preset
from trainables.train.config import DEFAULT_TEST_TOKENS, DataConfig, default_warmup, l0_problem
from trainables.train.trainer import InsufficientResourcesError, Resources, check_resources

#: ``data.corpus`` of a preset that trains on a corpus the user names (a spec to run must replace it).
CORPUS_TO_NAME = "name-a-corpus"

DEFAULT_MAX_TRIALS = 1000
_STEPS = run_settings()["steps"]


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string, and ``on``/``off``/``yes``/``no`` as booleans (so
    ``eval: {on: confirm}`` would have the key ``True``); specs are read as YAML 1.2 reads them."""

    yaml_implicit_resolvers: ClassVar[dict[Any, list[tuple[str, Any]]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str | bytes) -> Any:
    """YAML as sweep specs and ``--set`` values are read (``1e-3`` is a float)."""
    return yaml.load(text, Loader=_YamlLoader)

_STRICT = ConfigDict(extra="forbid", frozen=True)


class Range(BaseModel):
    """A continuous range: ``loguniform`` (low > 0) or ``uniform``; bounds inclusive, low < high."""

    model_config = _STRICT

    distribution: Literal["loguniform", "uniform"] = "loguniform"
    low: float
    high: float

    @model_validator(mode="after")
    def _bounds(self) -> Range:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"range bounds must be finite numbers, got low={self.low}, high={self.high}")
        if self.low >= self.high:
            problem = "empty" if self.low == self.high else "inverted"
            raise ValueError(f"{problem} range: low={self.low:g} must be smaller than high={self.high:g}")
        if self.distribution == "loguniform" and self.low <= 0:
            raise ValueError(f"a loguniform range needs low > 0, got low={self.low:g}")
        return self


def _range_first(value: Any) -> Any:
    """A mapping is a range: validated here, so its error is the range's (not 'not a number')."""
    if isinstance(value, Mapping):
        try:
            return Range.model_validate(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise ValueError(f"{where}: {msg}" if where else msg) from None
    return value


#: A hyperparameter: a fixed value, a list (grid axis / categorical choices) or a range.
Value = Annotated[float | list[float] | Range, BeforeValidator(_range_first)]


def _values_of(value: Value) -> list[float]:
    """Numbers named by a value (a range's bounds), for sign checks."""
    if isinstance(value, Range):
        return [value.low, value.high]
    if isinstance(value, list):
        return list(value)
    return [value]


def grid_size(value: Value) -> int | None:
    """Points a value contributes to a grid; None for a range (no grid)."""
    if isinstance(value, Range):
        return None
    return len(value) if isinstance(value, list) else 1


#: The trial parameter (and trials-table column) naming a trial's model preset when the size is an axis.
SIZE_PARAM = "model"


class ModelSpec(BaseModel):
    """A model preset of ``trainables.model.presets`` and overrides of its fields (``n_layer``, ``tie_weights``…).

    A list of presets makes the model size an axis of the sweep: every configuration runs at every size
    (the trials carry ``model``), the overrides apply to each, and the report compares the sizes."""

    model_config = _STRICT

    preset: str | list[str] = "tiny"
    overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> ModelSpec:
        names = self.presets()
        if not names:
            raise ValueError("preset: the list is empty; give one preset or several")
        for name in names:
            if name not in MODEL_PRESETS:
                raise ValueError(f"unknown model preset {name!r}; known: {', '.join(MODEL_PRESETS)}")
            if names.count(name) > 1:
                raise ValueError(f"preset: {name!r} is listed twice")
            model_preset(name, **self.overrides)  # raises ValueError naming the bad override
        return self

    def presets(self) -> list[str]:
        """The sizes the sweep trains, in the spec's order."""
        return list(self.preset) if isinstance(self.preset, list) else [self.preset]

    def is_axis(self) -> bool:
        """Whether the size is an axis of the sweep (more than one preset): trials then carry ``model``."""
        return len(self.presets()) > 1


DataSpec = section_model(
    "DataSpec",
    "data",
    """Corpus (``stdlib`` | ``text:PATH`` | ``parquet:PATH`` | ``shards:DIR``), tokenizer (``bytes`` | ``bpe:N``
    | ``hf:PATH``; a ``shards:`` corpus brings its own), batches. ``batch_size`` is the global batch of
    sequences per optimizer step. ``eval_tokens``: tokens of each validation evaluation; ``test_tokens``: of
    the test evaluation; ``sampling``: training windows as an ``epoch`` permutation or ``random`` with
    replacement (``trainables.train.config.DataConfig`` says each field's meaning).""",
    module=__name__,
)


class _Budget(BaseModel):
    model_config = _STRICT

    steps: int | None = Field(None, ge=1, description=_STEPS.help)
    tokens: int | None = Field(None, ge=1, description="Tokens each trial trains on (instead of steps).")
    scale: float = Field(1.0, gt=0, le=1, description="The fraction of the study to train (steps, warmup, reports).")

    @model_validator(mode="after")
    def _one_of(self) -> _Budget:
        if self.steps is None and self.tokens is None:
            raise ValueError("give the budget as steps or tokens (neither is set)")
        if self.steps is not None and self.tokens is not None:
            raise ValueError(f"give the budget as steps or tokens, not both (steps={self.steps}, tokens={self.tokens})")
        if self.test_interval % self.eval_interval:
            raise ValueError(
                f"budget.test_interval={self.test_interval} must be 0 or a multiple of "
                f"budget.eval_interval={self.eval_interval} (test evaluations ride on reports)"
            )
        return self


BudgetSpec = section_model(
    "BudgetSpec",
    "budget",
    """How long each trial trains: ``steps`` or ``tokens`` (exactly one), warmup and evaluation cadence.
    ``scale`` (0 < scale <= 1) trains that fraction of the study: the steps (or tokens), the warmup and
    the evaluation interval are all multiplied by it, so one setting shrinks a long study whole.
    ``warmup_steps`` left out: 5 % of the trial's steps.""",
    module=__name__,
    base=_Budget,
)


class SearchSpec(BaseModel):
    """``grid``: every combination (lists are axes; ranges are refused). ``random``: ``num_samples``
    configurations drawn with ``seed``. ``tpe``: Optuna's TPE sampler, seeded, ``num_samples`` trials,
    the first ``startup_trials`` of them random."""

    model_config = _STRICT

    algorithm: Literal["grid", "random", "tpe"] = "grid"
    num_samples: int = Field(8, ge=1)
    seed: int = 0
    startup_trials: int = Field(4, ge=0)


class SchedulerSpec(BaseModel):
    """Early stopping of weak trials. ``asha`` works on the worker-reported ``tokens`` counter:
    ``grace_period`` tokens before a trial can be stopped (default: a ninth of the budget),
    ``reduction_factor`` between rungs. Diverged trials always stop themselves, whatever this says."""

    model_config = _STRICT

    name: Literal["none", "asha"] = "none"
    grace_period: int | None = Field(None, ge=1)
    reduction_factor: float = Field(3.0, gt=1)


class ResourcesSpec(BaseModel):
    """Per trial: DDP ``workers``, each holding ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs."""

    model_config = _STRICT

    workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, ge=0)
    gpus_per_worker: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _something(self) -> ResourcesSpec:
        self.resources()  # the trainer's own checks, so a spec never asks for what a run refuses
        return self

    def resources(self) -> Resources:
        """The trainer's ``Resources`` of one trial (a ValueError naming the problem otherwise)."""
        return Resources(
            workers=self.workers, cpus_per_worker=self.cpus_per_worker, gpus_per_worker=self.gpus_per_worker
        )

    def per_worker(self) -> dict[str, float]:
        return self.resources().per_worker()


class _Divergence(BaseModel):
    model_config = _STRICT

    @field_validator("l0", mode="before", check_fields=False)
    @classmethod
    def _l0(cls, l0: Any) -> Any:
        problem = l0_problem(l0)
        if problem:
            raise ValueError(problem)
        return l0


DivergenceSpec = section_model(
    "DivergenceSpec",
    "divergence",
    """What ends a trial early (``trainables.train.config.DivergenceConfig`` says each field's meaning).

    A non-finite loss or gradient always ends it. ``val_margin`` only sets the recorded flag
    ``above_l0_step`` unless ``sustained_evals`` (K) > 0, when K consecutive evaluations above
    ``L0 + val_margin`` end the trial. ``l0``: ``ln_v`` (the paper's text), ``initial`` (measured) or a
    fixed number > 0 (the official notebook's ``10.83``).""",
    module=__name__,
    base=_Divergence,
)


class ConfirmSpec(BaseModel):
    """The confirm stage: after the search, the ``top_k`` best configurations of every method (baseline
    included) are re-trained on ``seeds``, seeds the search never used; verdicts and the best
    configuration come from these runs (docs/sweeps.md)."""

    model_config = _STRICT

    seeds: list[int] = Field(min_length=1)
    top_k: int = Field(1, ge=1)

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds


class ObjectiveSpec(BaseModel):
    """What Tune optimises: validation cross entropy without any penalty, minimised (fixed by design)."""

    model_config = _STRICT

    metric: Literal["val_loss"] = "val_loss"
    mode: Literal["min"] = "min"


class EvalSpec(BaseModel):
    """Downstream zero-shot evaluation after training, through lm-evaluation-harness (the ``lm-eval``
    extra; ``trainables.downstream``). ``tasks``: local tasks (``lossweep_next_line``, generated from
    ``corpus``, no network) or the harness's own (``hellaswag``, ``arc_easy``…, data from the Hugging
    Face Hub). ``limit``: the first N questions of each task (all when null). ``on``: which trials
    (``EVAL_TARGETS``): ``best`` (the best trial), ``confirm`` (each method's best configuration at
    every seed it ran with: the paired comparison across seeds), ``all`` (every trial that finished)."""

    model_config = _STRICT

    tasks: list[str] = Field(min_length=1)
    limit: int | None = Field(None, ge=1)
    on: EvalTarget = "best"
    corpus: str = DEFAULT_TASK_CORPUS
    batch_size: int = Field(DEFAULT_EVAL_BATCH, ge=1)

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, tasks: list[str]) -> list[str]:
        for name in tasks:
            if not _TASK_NAME.match(name):
                raise ValueError(f"task name {name!r} is not a task name (letters, digits, '_', '-', '.')")
        duplicates = sorted({n for n in tasks if tasks.count(n) > 1})
        if duplicates:
            raise ValueError(f"task(s) named twice: {', '.join(duplicates)}")
        return tasks


_TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


_EXAMPLE: dict[str, Any] = {
    "name": "lr-sweep",
    "model": {"preset": "tiny"},
    "data": {"corpus": "stdlib", "tokenizer": "bytes", "seq_len": 64, "batch_size": 8},
    "budget": {"steps": 200, "warmup_steps": 20, "eval_interval": 50},
    "methods": ["baseline", "z_loss", "mu_centering"],
    "lr": [1e-3, 1e-2, 1e-1],
    "coefficients": {"z_loss_weight": 1e-4},
    "search": {"algorithm": "grid"},
    "seeds": [0],
    "resources": {"workers": 1, "cpus_per_worker": 1},
    "max_concurrent_trials": 2,
}


#: The run settings a spec holds at its top level (precision, head_precision, allow_tf32, compile).
_TopLevelSettings = section_model(
    "_TopLevelSettings", "", "Run settings at the spec's top level.", module=__name__, base=BaseModel
)


class SweepSpec(_TopLevelSettings):  # type: ignore[misc, valid-type]
    """A sweep: methods × learning rates × coefficients × seeds, searched by grid, random or TPE."""

    # Errors never echo the input: a refused tracking field may hold a credential (tracking_spec.py).
    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, json_schema_extra={"examples": [_EXAMPLE]}
    )

    name: str = Field("sweep", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)  # type: ignore[valid-type]
    budget: BudgetSpec = Field(default_factory=lambda: BudgetSpec(steps=_STEPS.default))  # type: ignore[valid-type]
    methods: list[str] = Field(default_factory=lambda: [BASELINE], min_length=1)
    lr: Value = 1e-3
    coefficients: dict[str, Value] = Field(default_factory=dict)
    search: SearchSpec = Field(default_factory=SearchSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    confirm: ConfirmSpec | None = None
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    max_concurrent_trials: int = Field(2, ge=1)
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    divergence: DivergenceSpec = Field(default_factory=DivergenceSpec)  # type: ignore[valid-type]
    max_trials: int = Field(DEFAULT_MAX_TRIALS, ge=1)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)  # experiment trackers (docs/tracking.md)
    eval: EvalSpec | None = None  # downstream evaluation after training; none when null

    # ------------------------------------------------------------------ fields
    @field_validator("methods")
    @classmethod
    def _methods(cls, methods: list[str]) -> list[str]:
        out: list[str] = []
        for i, raw in enumerate(methods):
            try:
                canonical = LossConfig.from_method(str(raw), {}).method
            except LossConfigError as exc:
                raise ValueError(f"methods[{i}]: unknown method {raw!r} ({exc})") from None
            if canonical in out:
                raise ValueError(f"methods[{i}]: {raw!r} is listed twice")
            out.append(canonical)
        return out

    @field_validator("lr")
    @classmethod
    def _lr(cls, lr: Value) -> Value:
        if isinstance(lr, list) and not lr:
            raise ValueError("the learning-rate list is empty")
        bad = [v for v in _values_of(lr) if not (v > 0 and math.isfinite(v))]
        if bad:
            raise ValueError(f"learning rates must be positive and finite, got {bad[0]:g}")
        return lr

    @field_validator("coefficients")
    @classmethod
    def _coefficients(cls, coefficients: dict[str, Value]) -> dict[str, Value]:
        for name, value in coefficients.items():
            declared = coefficient(name)  # a ValueError listing the known names
            if isinstance(value, list) and not value:
                raise ValueError(f"{name}: the list is empty")
            numbers = _values_of(value)
            positive = declared.positive
            bad = [v for v in numbers if not math.isfinite(v) or (v <= 0 if positive else v < 0)]
            if bad:
                need = "positive" if positive else "non-negative"
                raise ValueError(f"{name}: values must be {need} and finite, got {bad[0]:g}")
        return coefficients

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds

    @field_validator("confirm")
    @classmethod
    def _confirm(cls, confirm: ConfirmSpec | None, info: ValidationInfo) -> ConfirmSpec | None:
        # methods and seeds are declared before confirm, so they are validated (or missing) by now.
        methods, seeds = info.data.get("methods"), info.data.get("seeds")
        if confirm is None or methods is None or seeds is None:
            return confirm
        if len(methods) < 2:
            raise ValueError(
                f"a confirm stage compares methods on fresh seeds; this sweep has one method ({methods[0]}): "
                "add one (e.g. baseline) or remove confirm"
            )
        reused = sorted(set(confirm.seeds) & set(seeds))
        if reused:
            raise ValueError(
                f"confirm.seeds {reused} are also search seeds; confirm seeds must be fresh (never used by the search)"
            )
        return confirm

    # ------------------------------------------------------------- whole spec
    @model_validator(mode="after")
    def _whole(self, info: ValidationInfo) -> SweepSpec:
        context = info.context if isinstance(info.context, Mapping) else {}
        if self.search.algorithm == "grid":
            for name, value in self.hyperparameters().items():
                if isinstance(value, Range):
                    field = "lr" if name == "lr" else f"coefficients.{name}"
                    raise ValueError(
                        f"{field}: a grid search cannot expand a range; give a list of values, "
                        "or use search.algorithm random or tpe"
                    )
        if self.data.batch_size % self.resources.workers:
            raise ValueError(
                f"data.batch_size={self.data.batch_size} is the global batch and must be divisible by "
                f"resources.workers={self.resources.workers}"
            )
        try:
            self.data_config()
        except ValueError as exc:
            raise ValueError(f"budget.micro_batch: {exc}") from None
        for preset in self.model.presets():
            tied = model_preset(preset, **self.model.overrides).tie_weights
            for method in self.methods:
                try:
                    LossConfig.from_method(method, {}).check_head(tied=tied)
                except LossConfigError as exc:
                    raise ValueError(f"model.overrides.tie_weights: method {method!r}: {exc}") from None
        if self.warmup_steps() >= self.total_steps():
            scaled = f" x budget.scale={self.budget.scale:g}" if self.budget.scale != 1 else ""
            raise ValueError(
                f"budget.warmup_steps={self.budget.warmup_steps}{scaled} must be smaller than the trial's "
                f"{self.total_steps()} steps"
            )
        if self.data.corpus == CORPUS_TO_NAME and not context.get("preset_template"):
            raise ValueError(
                "data.corpus: this sweep trains on a corpus you name, e.g. --set data.corpus=parquet:/data/tokens"
                " (docs/gpu.md)"
            )
        limit = int(context.get("max_trials", self.max_trials))
        n = self.num_trials()
        if n > limit:
            raise ValueError(
                f"the sweep has {n} trials, more than the maximum of {limit} (max_trials); "
                "shrink the grid (methods, lr, coefficients, seeds) or raise max_trials"
            )
        nodes = context.get("cluster_resources")
        if nodes is not None:
            check_fits(self.resources, [nodes] if isinstance(nodes, Mapping) else list(nodes))
        return self

    # ----------------------------------------------------------------- views
    def confirm_trials(self) -> int:
        """Trials of the confirm stage at most: methods × sizes × ``top_k`` × confirm seeds (0 without one)."""
        if self.confirm is None:
            return 0
        return len(self.methods) * len(self.model.presets()) * self.confirm.top_k * len(self.confirm.seeds)

    def hyperparameters(self) -> dict[str, Value]:
        """``lr`` and the coefficients the chosen methods use (others are ignored)."""
        used = {c for m in self.methods for c in method_coefficients(m)}
        return {"lr": self.lr, **{k: v for k, v in self.coefficients.items() if k in used}}

    def method_space(self, method: str) -> dict[str, Value | None]:
        """``lr`` and every coefficient of ``method``: the spec's value, or None (the method's default)."""
        return {"lr": self.lr, **{c: self.coefficients.get(c) for c in method_coefficients(method)}}

    def data_config(self) -> DataConfig:
        """The trials' batching as a ``DataConfig`` (a ValueError when ``budget.micro_batch`` does not divide
        a worker's batch)."""
        data = DataConfig(batch_size=self.data.batch_size, micro_batch=self.budget.micro_batch)
        data.micro_steps(self.data.batch_size // self.resources.workers)
        return data

    def total_steps(self) -> int:
        if self.budget.steps is not None:
            return max(1, round(self.budget.steps * self.budget.scale))
        per_step = self.data.batch_size * self.data.seq_len
        return max(1, math.ceil(int(self.budget.tokens or 0) * self.budget.scale / per_step))

    def warmup_steps(self) -> int:
        """Warmup steps of one trial (``budget.warmup_steps`` x ``budget.scale``; left out, the run's
        default: 5 % of the trial's steps)."""
        if self.budget.warmup_steps is None:
            return default_warmup(self.total_steps())
        return round(self.budget.warmup_steps * self.budget.scale)

    def eval_interval(self) -> int:
        """Steps between reports of one trial (``budget.eval_interval`` x ``budget.scale``, at least 1)."""
        return max(1, round(self.budget.eval_interval * self.budget.scale))

    def test_interval(self) -> int:
        """Steps between test evaluations of one trial besides the last (0: only at the end):
        ``budget.test_interval`` x ``budget.scale``, kept a multiple of :meth:`eval_interval`."""
        if not self.budget.test_interval:
            return 0
        every = self.eval_interval()
        return every * max(1, round(self.budget.test_interval * self.budget.scale / every))

    def test_tokens(self) -> int:
        """Tokens of one trial's test evaluation: ``data.test_tokens`` x ``budget.scale``, but not below the
        default (sized for a standard error <= 0.01 nats) unless ``data.test_tokens`` itself is smaller."""
        scaled = round(self.data.test_tokens * self.budget.scale)
        return min(self.data.test_tokens, max(DEFAULT_TEST_TOKENS, scaled))

    def total_tokens(self) -> int:
        """Tokens one trial trains on when it runs to the end (the ASHA horizon)."""
        return self.total_steps() * self.data.batch_size * self.data.seq_len

    def grid_configurations(self) -> int:
        """Configurations of a grid (per seed): for each method, the product of its axes."""
        total = 0
        for method in self.methods:
            n = 1
            for value in self.method_space(method).values():
                n *= (grid_size(value) or 1) if value is not None else 1
            total += n
        return total

    def search_trials(self) -> int:
        """Trials of the search stage: grid configurations × sizes × seeds; ``num_samples`` × sizes × seeds
        for random; ``num_samples`` for TPE (each sample takes the next size and seed in turn)."""
        sizes = len(self.model.presets())
        if self.search.algorithm == "grid":
            return self.grid_configurations() * sizes * len(self.seeds)
        if self.search.algorithm == "random":
            return self.search.num_samples * sizes * len(self.seeds)
        return self.search.num_samples

    def num_trials(self) -> int:
        """Trials the sweep runs: the search's, then the confirm stage's (:meth:`confirm_trials`)."""
        return self.search_trials() + self.confirm_trials()


def check_fits(resources: ResourcesSpec, nodes: Sequence[Mapping[str, float]]) -> None:
    """``ValueError`` (``resources: ...``) when one trial's workers cannot be placed on ``nodes`` (each a
    node's resources): the rule the ``cluster_resources`` context applies, callable on a spec already
    validated, so the service checks the fit without validating the spec a second time."""
    try:
        check_resources(resources.resources(), nodes=nodes)
    except InsufficientResourcesError as exc:
        raise ValueError(f"resources: {exc}") from None
