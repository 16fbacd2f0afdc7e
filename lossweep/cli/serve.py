"""``lossweep serve`` (the REST service under uvicorn), ``lossweep token`` (API tokens) and ``lossweep db``
(the database schema)."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from lossweep.local_cluster import LocalCluster

token_app = typer.Typer(help="Create, list and revoke the service's API tokens.", no_args_is_help=True)
db_app = typer.Typer(help="The service database's schema (Alembic migrations shipped with lossweep).",
                     no_args_is_help=True)


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray Jobs API address (default: $LOSSWEEP_RAY_ADDRESS or http://127.0.0.1:8265).")
    ] = None,
    local_ray: Annotated[
        bool, typer.Option("--local-ray", help="Start (or reuse) a private local Ray head and use it. A head this "
                           "command started is stopped when the service stops (SIGTERM, Ctrl-C) unless --keep-ray.")
    ] = False,
    keep_ray: Annotated[
        bool, typer.Option("--keep-ray", help="With --local-ray: leave the head running when the service stops.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the REST service (FastAPI under uvicorn). Settings come from LOSSWEEP_* variables; see docs/service.md."""
    import uvicorn

    from service.app import create_app
    from service.routes.ui import page_url
    from service.settings import Settings

    overrides: dict[str, object] = {}
    cluster = None
    if local_ray:
        from lossweep.local_cluster import ensure_local_cluster

        cluster = ensure_local_cluster()
        overrides.update(ray_address=cluster.dashboard_url, dashboard_url=cluster.dashboard_url)
        if cluster.auth_token:
            overrides["ray_auth_token"] = cluster.auth_token
        typer.echo(f"Ray: {'started' if cluster.started else 'reusing'} local head, dashboard {cluster.dashboard_url}")
    if ray_address:
        overrides["ray_address"] = ray_address
    settings = Settings(**overrides)  # type: ignore[arg-type]
    app = create_app(settings)
    typer.echo(f"lossweep service on http://{host}:{port} (API docs at /docs), Ray Jobs API {settings.ray_address}")
    typer.echo(f"web page: {page_url(f'http://{host}:{port}')}")
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then raises the signal again with the handler it
    # found: this one turns SIGTERM into a normal exit so that the head is dealt with below.
    signal.signal(signal.SIGTERM, _exit_normally)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")
    except KeyboardInterrupt:
        pass
    finally:
        if cluster is not None:
            _leave_local_ray(cluster, keep=keep_ray)


def _exit_normally(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _leave_local_ray(cluster: LocalCluster, *, keep: bool) -> None:
    """A head this service started ends with it (its CPUs would otherwise stay taken, and sweeps on it
    stop with the service either way); one it found running, or --keep-ray, is left, and said so."""
    from lossweep.local_cluster import stop_local_cluster

    if cluster.started and not keep:
        stop_local_cluster(cluster)
        typer.echo(f"stopped the local Ray head {cluster.address} this service started")
        return
    why = "it was running before the service" if not cluster.started else "--keep-ray"
    typer.echo(f"the local Ray head {cluster.address} keeps running ({why}); stop it with `lossweep cluster stop`")


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="The user the token acts as.")],
    admin: Annotated[bool, typer.Option("--admin", help="May cancel anyone's sweeps.")] = False,
    expires: Annotated[str | None, typer.Option(
        help="When the token stops working: a duration from now (90m, 12h, 30d) or a time with its zone "
        "(2027-01-31T00:00Z). Default: never.")] = None,
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from service.auth import create_token, parse_expiry
    from service.db import init_db, make_engine, make_sessionmaker, session_scope
    from service.settings import Settings

    try:
        expires_at = parse_expiry(expires) if expires is not None else None
    except ValueError as exc:
        typer.echo(f"lossweep token create: --expires: {exc}", err=True)
        raise typer.Exit(2) from None
    settings = Settings()
    engine = make_engine(settings.resolved_database_url)
    init_db(engine)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            row, token = create_token(session, name, admin=admin, expires_at=expires_at)
            token_id = row.id
    except ValueError as exc:
        typer.echo(f"lossweep token create: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    until = f", expires {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at is not None else ""
    typer.echo(f"# token {token_id} for {name}{' (admin)' if admin else ''}{until}; shown once, store it now:",
               err=True)
    typer.echo(token)


@token_app.command("list")
def token_list() -> None:
    """List tokens (id, user, admin, created, revoked); never the tokens themselves."""
    from sqlalchemy import select

    from service.db import init_db, make_engine, make_sessionmaker
    from service.models import ApiToken
    from service.settings import Settings

    engine = make_engine(Settings().resolved_database_url)
    init_db(engine)
    with make_sessionmaker(engine)() as session:
        rows = list(session.scalars(select(ApiToken).order_by(ApiToken.id)))
        for r in rows:
            flags = ("admin " if r.is_admin else "") + ("revoked " if r.revoked else "")
            flags += f"expires {r.expires_at:%Y-%m-%d %H:%M}" if r.expires_at is not None else ""
            typer.echo(f"{r.id:>4}  {r.name:<24} {r.prefix}…  {r.created_at:%Y-%m-%d %H:%M}  {flags}".rstrip())
    engine.dispose()


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int | None, typer.Argument(help="Token id (from `lossweep token list`).")] = None,
    name: Annotated[str | None, typer.Option(help="Revoke every token of this user instead.")] = None,
) -> None:
    """Revoke a token (or all of a user's tokens)."""
    from service.auth import revoke_tokens
    from service.db import init_db, make_engine, make_sessionmaker, session_scope
    from service.settings import Settings

    if token_id is None and name is None:
        typer.echo("lossweep token revoke: give a token id or --name USER", err=True)
        raise typer.Exit(2)
    engine = make_engine(Settings().resolved_database_url)
    init_db(engine)
    with session_scope(make_sessionmaker(engine)) as session:
        n = revoke_tokens(session, token_id=token_id, name=name)
    engine.dispose()
    typer.echo(f"revoked {n} token(s)")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the database (LOSSWEEP_DATABASE_URL) to this release's schema; the service also does it at start-up."""
    from service.db import current_revision, make_engine, upgrade
    from service.settings import Settings

    engine = make_engine(Settings().resolved_database_url)
    try:
        before = current_revision(engine)
        after = upgrade(engine)
    except Exception as exc:  # a database that does not answer or refuses: one line, not a traceback
        typer.echo(f"lossweep db upgrade: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                   err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    was = "" if before == after else f" (was {before or 'unversioned: 0.1.0 or new'})"
    typer.echo(f"database schema at revision {after}{was}")


def register(app: typer.Typer) -> None:
    """Adds ``serve`` and the ``token`` and ``db`` groups to the ``lossweep`` app."""
    app.command("serve")(serve)
    app.add_typer(token_app, name="token")
    app.add_typer(db_app, name="db")
