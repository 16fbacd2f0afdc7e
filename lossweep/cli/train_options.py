"""Flags of one training run, shared by ``lossweep train-local`` and ``lossweep train`` (Ray).

The flags are the run settings that declare a ``flag`` (``trainables.train.settings``: name, type,
default, range and help come from the config dataclasses), which ``with_run_flags`` puts into both
commands' signatures; ``build_train_config`` turns them into a ``TrainConfig`` and raises ``FlagError``
with a one-line message naming the flag. ``fail`` prints such a message and exits with
status 2 (no traceback).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from trainables.train.settings import Setting, put, settings_of

if TYPE_CHECKING:
    from trainables.train.config import TrainConfig

R = TypeVar("R")

LossOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--loss",
        help="Loss term, repeatable: NAME[=WEIGHT][,key=value], e.g. --loss z_loss=1e-4, --loss mu_centering, "
        "--loss softcap=30, --loss simreg=0.1,temperature=0.1. None = baseline (cross entropy only).",
    ),
]


@dataclass(frozen=True)
class RunFlag:
    """A run setting's option: ``param`` is the command's parameter, ``path`` the setting's place in
    ``TrainConfig.to_dict()``."""

    param: str
    path: str
    setting: Setting

    @property
    def option(self) -> str:
        """The option as an error message names it (``--tf32`` for ``--tf32/--no-tf32``)."""
        return str(self.setting.info.flag).partition("/")[0]

    def annotation(self) -> Any:
        s = self.setting
        tp = (str | None if s.optional else str) if s.choices is not None else s.type
        return Annotated[tp, typer.Option(s.info.flag, help=s.help)]


@functools.cache
def run_flags() -> tuple[RunFlag, ...]:
    """The options of one run, from the settings that declare a ``flag``: ``TrainConfig``'s, with the
    model's (``ModelConfig``'s, as ``model_overrides``) after ``--preset``."""
    from trainables.model.config import ModelConfig
    from trainables.train.config import TrainConfig

    def flag(s: Setting) -> RunFlag:
        param = str(s.info.flag).partition("/")[0].removeprefix("--").replace("-", "_")
        return RunFlag(param=param, path=s.path, setting=s)

    out: list[RunFlag] = []
    for s in settings_of(TrainConfig):
        if s.info.flag is not None:
            out.append(flag(s))
        if s.path == "model":
            out += [flag(m) for m in settings_of(ModelConfig, "model_overrides.") if m.info.flag is not None]
    return tuple(out)


# First keys of the final JSON object of `train-local --json` and `train --json`; every metric of the
# last report follows them.
SUMMARY_KEYS = (
    "val_loss",
    "train_loss",
    "tokens",
    "steps",
    "diverged",
    "diverged_step",
    "diverged_cause",
    "tokens_per_s",
)


class FlagError(ValueError):
    """A flag value that cannot make a valid run; the message names the flag."""


def fail(message: str) -> NoReturn:
    """One line on stderr, exit status 2 (a usage error), no traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@dataclass(frozen=True)
class RunFlags:
    """The values of one run's options (:func:`run_flags`, by parameter name) and its ``--loss`` terms."""

    values: Mapping[str, Any]
    loss: tuple[str, ...] = ()

    @property
    def gpu(self) -> bool:
        return bool(self.values["gpu"])


def with_run_flags(command: Callable[..., R]) -> Callable[..., R]:
    """``command`` with the run's options (:func:`run_flags`, then ``--loss``) as its first options (typer
    reads the signature, so ``--help`` lists them); it receives them as one ``flags: RunFlags`` argument."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "flags"]
    keyword = inspect.Parameter.KEYWORD_ONLY
    shared = [
        inspect.Parameter(f.param, keyword, default=f.setting.default, annotation=f.annotation()) for f in run_flags()
    ]
    shared.append(inspect.Parameter("loss", keyword, default=None, annotation=LossOpt))
    names = [f.param for f in run_flags()]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> R:
        flags = RunFlags({name: kwargs.pop(name) for name in names}, tuple(kwargs.pop("loss") or ()))
        return command(flags=flags, **kwargs)

    parameters = shared + [p.replace(kind=keyword) for p in own]
    wrapper.__signature__ = inspect.Signature(parameters, return_annotation=None)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


def _l0_value(text: str) -> str | float:
    """``--l0``'s text as the config holds it: a convention name, or a number."""
    try:
        return float(text)
    except ValueError:
        return text


def build_train_config(flags: RunFlags, *, use_gpu: bool | None = None) -> TrainConfig:
    """The ``TrainConfig`` the flags describe (``use_gpu`` overrides ``--gpu``); ``FlagError`` on any
    invalid value."""
    from trainables.data.corpus_spec import CORPUS_KINDS, CorpusError, CorpusSpec
    from trainables.data.tokenizer import parse_tokenizer_spec
    from trainables.losses.config import LossConfig
    from trainables.model.presets import model_preset
    from trainables.train.config import TrainConfig, default_warmup

    doc: dict[str, Any] = {}
    for f in run_flags():
        value = f.setting.coerce(flags.values[f.param])
        problem = f.setting.problem(value)
        if problem is not None:
            raise FlagError(f"{f.option}: {problem}")
        if f.path.startswith("model_overrides.") and value == f.setting.default:
            continue  # only what the user changed overrides the preset (and enters the config hash)
        put(doc, f.path, value)
    if use_gpu is not None:
        doc["use_gpu"] = use_gpu
    steps = int(doc["steps"])
    warmup = doc["optim"]["warmup_steps"]
    warmup = default_warmup(steps) if warmup is None else warmup
    if not 0 <= warmup < steps:
        raise FlagError(f"--warmup: must be in [0, --steps), got {warmup}")
    try:
        model_preset(doc["model"])
    except ValueError as exc:
        raise FlagError(f"--preset: {exc}") from None
    try:
        parse_tokenizer_spec(doc["data"]["tokenizer"])
    except ValueError as exc:
        raise FlagError(f"--tokenizer: {exc}") from None
    try:
        CorpusSpec.parse(doc["data"]["corpus"])
    except CorpusError:
        raise FlagError(f"--data: use {CORPUS_KINDS}, not {doc['data']['corpus']!r}") from None
    try:
        loss = LossConfig.from_cli(list(flags.loss))
    except ValueError as exc:
        raise FlagError(f"--loss: {exc}") from None
    try:
        loss.check_head(tied=bool(doc.get("model_overrides", {}).get("tie_weights", False)))
    except ValueError as exc:
        raise FlagError(f"--tie-weights: {exc}") from None
    doc["loss"] = loss.to_dict()
    try:
        config = TrainConfig.from_dict(doc)
        config.data.micro_steps(config.data.batch_size)  # a necessary condition here; `train` checks each worker's
    except ValueError as exc:
        raise FlagError(f"--micro-batch: {exc}" if "must divide" in str(exc) else _named_flag(str(exc))) from None
    return config


def _named_flag(message: str) -> str:
    """A config's message about a setting (``divergence.l0 must be …``) as about its option (``--l0: must be …``)."""
    for f in run_flags():
        if message.startswith(f"{f.path} "):
            return f"{f.option}: {message[len(f.path) + 1 :]}"
    return message
