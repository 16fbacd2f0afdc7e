"""The ``lossweep`` command. Each command group lives in its own module and registers itself here;
heavy imports (torch, ray) happen inside the commands so that ``--help`` stays instant."""

from __future__ import annotations

import typer

from lossweep.cli import client, cluster, data, demo, presets, serve, sweep, sweep_report, train, train_ray
from lossweep.cli import eval as eval_cli

app = typer.Typer(
    name="lossweep",
    help="Find which pretraining loss regularizer keeps a language model stable across learning rates.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

for module in (train, train_ray, cluster, sweep, sweep_report, presets, serve, client, demo, data, eval_cli):
    module.register(app)


def main() -> None:
    from trainables.losses.plugins import PluginError

    try:
        app()
    except PluginError as exc:  # an installed loss plugin is broken: say which, without a traceback
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
