"""``lossweep data``: prepare a corpus once into token shards (on Ray Data), and check a prepared set."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Annotated, Any

import typer

from lossweep.cli.train_options import fail

data_app = typer.Typer(help="Prepare corpora into memory-mapped token shards (`shards:DIR` corpora).",
                       no_args_is_help=True)  # fmt: skip


def register(app: typer.Typer) -> None:
    """Adds the ``data`` command group to the ``lossweep`` app."""
    app.add_typer(data_app, name="data")


@data_app.command("prepare")
def prepare_command(
    source: Annotated[
        str,
        typer.Argument(
            help="'stdlib', a text file or folder (or text:PATH, as --data writes it), a .jsonl file or folder, "
            "or a .parquet file or folder."
        ),
    ],
    tokenizer: Annotated[
        str, typer.Option("--tokenizer", help="'bytes', 'bpe:N' (trained on the source) or 'hf:PATH' (tokenizer.json).")
    ],
    out: Annotated[str, typer.Option("--out", help="Folder of the shard set (a path or an s3:// URI).")],
    fmt: Annotated[str, typer.Option("--format", help="auto, text, jsonl or parquet.")] = "auto",
    field: Annotated[
        str, typer.Option("--field", help="The text field of JSONL records / the text column of Parquet files.")
    ] = "text",
    dtype: Annotated[str, typer.Option("--dtype", help="Shard dtype: auto (uint16 when V <= 65,536), uint16, uint32.")]
    = "auto",
    shard_tokens: Annotated[int, typer.Option("--shard-tokens", help="Tokens per shard file.")] = 1 << 27,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Tokenizer actors (default: one per CPU of the cluster).")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option("--address", help="Ray address. Default: RAY_ADDRESS, else the local cluster (started if needed)"),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing shard set at --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON on the last line.")] = False,
) -> None:
    """Tokenize SOURCE once into fixed-size token shards plus a manifest, in parallel on Ray Data.

    Example: lossweep data prepare corpus/ --tokenizer hf:gpt2/tokenizer.json --out data/web-gpt2
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    from lossweep.cli.train_ray import _connect
    from trainables.data.corpus import CorpusError
    from trainables.data.prepare import Progress as PrepareProgress
    from trainables.data.prepare import make_plan, prepare
    from trainables.data.shard_writer import check_out

    if shard_tokens < 1:
        fail(f"--shard-tokens: must be >= 1, got {shard_tokens}")
    if workers is not None and workers < 1:
        fail(f"--workers: must be >= 1, got {workers}")
    console = Console(stderr=True)
    try:  # every check that needs no cluster comes first: a typo costs no Ray start-up
        check_out(out, overwrite=overwrite)
        with console.status("reading the source" + (" and training the tokenizer" if "bpe:" in tokenizer else "")):
            plan = make_plan(source, tokenizer, fmt=fmt, field=field, dtype=dtype)
    except (CorpusError, ValueError) as exc:
        fail(str(exc))
    _connect(address or os.environ.get("RAY_ADDRESS") or None, console)
    import ray.data  # noqa: F401 - configures its loggers on import: quiet them after that

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # the progress bar below says what matters
    bar = Progress(
        TextColumn("tokenizing"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[tokens]} tokens · {task.fields[rate]} tokens/s"),
        TimeElapsedColumn(),
        console=console,
        disable=as_json,
    )
    started = time.perf_counter()

    def on_progress(p: PrepareProgress) -> None:
        rate = p.tokens / max(time.perf_counter() - started, 1e-9)
        bar.update(task, completed=p.bytes_done, total=p.bytes_total, tokens=f"{p.tokens:,}", rate=f"{rate:,.0f}")

    with bar:
        task = bar.add_task("prepare", total=None, tokens="0", rate="-")
        try:
            manifest = prepare(plan, out, shard_tokens=shard_tokens, concurrency=workers, overwrite=overwrite,
                               on_progress=on_progress)  # fmt: skip
        except (CorpusError, ValueError) as exc:
            bar.stop()
            fail(str(exc))
        except KeyboardInterrupt:
            bar.stop()
            console.print("interrupted: nothing was written (rerun the same command to prepare the set)")
            raise typer.Exit(130) from None
    wall = time.perf_counter() - started
    summary = _summary(manifest, out, wall)
    if as_json:
        print(json.dumps(summary))
        return
    s = manifest["splits"]
    console.print(
        f"wrote {out}: {s['train']['tokens']:,} train + {s['val']['tokens']:,} val tokens "
        f"({manifest['dtype']}, V={manifest['vocab_size']:,}) in {wall:.1f} s, "
        f"{summary['tokens_per_s']:,.0f} tokens/s; train on it with --data shards:{out}"
    )


def _summary(manifest: dict[str, Any], out: str, wall_s: float) -> dict[str, Any]:
    tokens = sum(manifest["splits"][s]["tokens"] for s in manifest["splits"])
    return {
        "out": out,
        "dtype": manifest["dtype"],
        "vocab_size": manifest["vocab_size"],
        "eot_id": manifest["eot_id"],
        "tokens": {s: manifest["splits"][s]["tokens"] for s in manifest["splits"]},
        "shards": {s: len(manifest["splits"][s]["shards"]) for s in manifest["splits"]},
        "content_hash": manifest["content_hash"],
        "wall_s": round(wall_s, 3),
        "tokens_per_s": tokens / max(wall_s, 1e-9),
    }


@data_app.command("verify")
def verify_command(
    path: Annotated[str, typer.Argument(help="A shard set folder (or shards:DIR).")],
) -> None:
    """Re-hash every file of a shard set against its manifest (reads the whole set)."""
    from trainables.data.shards import ShardError, verify

    try:
        shards = verify(path)
    except ShardError as exc:
        fail(str(exc))
    m = shards.manifest
    typer.echo(
        f"{shards.path}: ok · {len(shards.train):,} train + {len(shards.val):,} val tokens · {m['dtype']} · "
        f"V={m['vocab_size']:,} · tokenizer {m['tokenizer']['spec']} · content hash {m['content_hash'][:16]}"
    )
