"""``lossweep cluster status|stop``: the local Ray cluster that ``train``, ``serve`` and ``demo`` start
and reuse (:mod:`lossweep.local_cluster`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from lossweep.local_cluster import LocalCluster

cluster_app = typer.Typer(
    name="cluster",
    help="The local Ray cluster that `lossweep train`, `serve` and `demo` start and reuse.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the ``lossweep`` app."""
    app.add_typer(cluster_app)


HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="State dir of the cluster (default: $LOSSWEEP_HOME or ~/.lossweep).")
]


def _recorded(home: Path | None) -> LocalCluster | None:
    """The cluster recorded in the state dir, or None after saying that none is."""
    from lossweep.local_cluster import default_state_dir, read_cluster

    state = home or default_state_dir()
    cluster = read_cluster(state)
    if cluster is None:
        typer.echo(f"no local cluster recorded in {state}")
    return cluster


@cluster_app.command("status")
def cluster_status(home: HomeOpt = None) -> None:
    """Address, dashboard and liveness of the local cluster (starts nothing)."""
    from lossweep.local_cluster import describe, is_alive

    cluster = _recorded(home)
    if cluster is None:
        raise typer.Exit(code=1)
    alive = is_alive(cluster)
    for key, value in describe(cluster).items():
        typer.echo(f"{key:>9}: {value}")
    typer.echo(f"{'status':>9}: {'running' if alive else 'not answering'}")
    if not alive:
        raise typer.Exit(code=1)


@cluster_app.command("stop")
def cluster_stop(home: HomeOpt = None) -> None:
    """Stop the local cluster's processes only (other Ray clusters on the machine are left alone), and the
    service `lossweep demo` started against it."""
    from lossweep.cli.demo import stop_service
    from lossweep.local_cluster import default_state_dir, stop_local_cluster

    url = stop_service(home or default_state_dir())
    if url is not None:
        typer.echo(f"stopped the demo's service at {url}")
    cluster = _recorded(home)
    if cluster is None:
        return
    stop_local_cluster(cluster)
    typer.echo(f"stopped the local Ray cluster {cluster.address} ({cluster.temp_dir})")
