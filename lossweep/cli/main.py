"""The ``lossweep`` command. Each command group lives in its own module and registers itself here;
heavy imports (torch, ray) happen inside the commands so that ``--help`` stays instant."""

from __future__ import annotations

import typer

from trainables.losses.plugins import PluginError


def _broken_plugin(exc: PluginError) -> SystemExit:
    """An installed loss plugin is broken: say which, in one line, without a traceback."""
    typer.echo(f"error: {exc}", err=True)
    return SystemExit(2)


try:  # the command modules read the loss registry as they load, and so load the installed plugins
    from lossweep.cli import client, cluster, data, demo, presets, results, serve, sweep, sweep_report, train, train_ray
    from lossweep.cli import eval as eval_cli
except PluginError as exc:
    raise _broken_plugin(exc) from None

app = typer.Typer(
    name="lossweep",
    help="Find which pretraining loss regularizer keeps a language model stable across learning rates.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for module in (train, train_ray, cluster, sweep, sweep_report, presets, serve, client, demo, data, eval_cli, results):
    module.register(app)


def main() -> None:
    try:
        app()
    except PluginError as exc:
        raise _broken_plugin(exc) from None


if __name__ == "__main__":
    main()
