"""``lossweep results``: the results page and the study data it is generated from.

``collect`` keeps a finished study sweep's tables as study data; ``build`` rewrites the page's generated
blocks from that data; ``build --check`` fails when the page says something the data does not give.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

results_app = typer.Typer(
    help="The results page (docs/results.md) and the study data it is generated from (docs/results/).",
    no_args_is_help=True,
)

PAGE = "docs/results.md"
DATA = "docs/results"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@results_app.command("collect")
def collect_command(
    sweep_dir: Annotated[str, typer.Argument(metavar="DIR", help="A finished sweep directory (local path).")],
    data: Annotated[str, typer.Option(help="Study data folder; the study goes in DATA/<spec name>/.")] = DATA,
) -> None:
    """Keep a finished sweep's spec, manifest, progress and tables as study data (zstd Parquet)."""
    from search_spaces.reports import results_page

    try:
        dest = results_page.collect(sweep_dir, data)
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from None
    total = results_page.data_size(data)
    typer.echo(f"{dest}: {results_page.data_size(dest) / 1e3:.0f} kB; all study data {total / 1e6:.2f} MB "
               f"(budget {results_page.SIZE_BUDGET_BYTES / 1e6:.2f} MB)")  # fmt: skip
    if total > results_page.SIZE_BUDGET_BYTES:
        raise _fail("the study data is over its size budget: trim metrics.parquet or drop a study", 1)


@results_app.command("build")
def build_command(
    page: Annotated[str, typer.Option(help="The page whose generated blocks are rewritten.")] = PAGE,
    data: Annotated[str, typer.Option(help="Study data folder.")] = DATA,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 naming the blocks that differ from the data.")
    ] = False,
) -> None:
    """Regenerate every `<!-- generated: ... -->` block of the page from the study data."""
    from search_spaces.reports import results_page

    path = Path(page)
    if not path.is_file():
        raise _fail(f"{page}: no such file")
    if not Path(data).is_dir():
        raise _fail(f"{data}: no such folder (collect a study into it with `lossweep results collect DIR`)")
    text = path.read_text(encoding="utf-8")
    try:
        if check:
            stale = results_page.stale_blocks(text, data)
            if stale:
                typer.echo(f"{page} differs from its data in {len(stale)} block(s):", err=True)
                for head in stale:
                    typer.echo(f"  {head}", err=True)
                typer.echo("run `lossweep results build` to regenerate them", err=True)
                raise typer.Exit(1)
            typer.echo(f"{page} matches {data}")
            return
        fresh = results_page.render(text, data)
    except results_page.PageError as exc:
        raise _fail(f"{page}: {exc}") from None
    if fresh != text:
        from trainables.data.atomic_file import write_atomic

        write_atomic(path, fresh.encode("utf-8"))
    typer.echo(f"{page}: {'rewritten' if fresh != text else 'already current'}")


def register(app: typer.Typer) -> None:
    app.add_typer(results_app, name="results")
