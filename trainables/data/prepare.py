"""``lossweep data prepare``: tokenize a corpus once, in parallel on Ray Data, into token shards.

Sources (``SOURCE``):

- ``stdlib`` — the built-in corpus (``trainables.data.corpus``), file by file;
- a text file or a folder of ``.txt``/``.md``/``.py`` files — a file is a document;
- a ``.jsonl`` file or a folder of them — a line is a document, its text under ``field`` (``text``);
  files larger than ``JSONL_UNIT_BYTES`` are cut into byte ranges (a line belongs to the range that
  holds its first byte), so one multi-GB file is many units of work, never one huge one;
- a ``.parquet`` file or a folder of them — a row is a document, its text in column ``field``.

A folder is read as Parquet if it holds any ``.parquet`` file, else as JSONL if it holds any
``.jsonl``, else as text (``fmt`` forces one). Files are taken in the order of their relative paths.

The work is cut into units (a file; a Parquet row group), tokenized by a pool of Ray Data actors that
each load the tokenizer once, and written by this process in unit order (Ray Data keeps the order),
so the shards are byte-identical for the same input whatever the parallelism. A document goes to
the validation split when a hash of its key (relative path; ``@byte`` offset of a JSONL line, ``#row``
of a Parquet row) falls
in the lowest ``VAL_PERCENT`` % — the rule of ``text:`` corpora, so adding documents never moves
others between splits; a single text file is split at 90 % of its length instead.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from trainables.data.corpus import TEXT_SUFFIXES, VAL_PERCENT, CorpusError, is_val_document, stdlib_files, stdlib_root
from trainables.data.corpus_spec import CorpusSpec
from trainables.data.shard_writer import ShardWriter
from trainables.data.shards import DEFAULT_SHARD_TOKENS, ShardError, shard_dtype
from trainables.data.tokenizer import (
    BPETokenizer,
    ByteTokenizer,
    parse_tokenizer_spec,
    read_hf_tokenizer,
    tokenizer_from_bytes,
    train_tokenizer,
)

Format = Literal["text", "jsonl", "parquet"]
FORMATS: tuple[str, ...] = ("auto", "text", "jsonl", "parquet")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
JSONL_UNIT_BYTES = 64 << 20
BPE_SAMPLE_BYTES = 64 << 20  # a bpe:N tokenizer is trained on the first 64 MB of training documents


class PrepareError(CorpusError):
    """Bad input to ``data prepare``; the message is one line naming the file and the fix."""


@dataclass(frozen=True)
class Unit:
    """One piece of work: a whole file, or one row group of a Parquet file."""

    index: int
    path: str
    rel: str
    fmt: Format
    size: int  # bytes of source it covers (for progress)
    row_group: int = -1
    first_row: int = 0
    start: int = 0  # JSONL: the byte range [start, end) whose lines this unit reads; end -1 = to the end
    end: int = -1
    whole_split: bool = False  # the source's only document: split at 90 % of its length


# ---------------------------------------------------------------------------------------------- sources
def _files(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        out.extend(Path(dirpath) / f for f in filenames if f.endswith(suffixes) and not f.startswith("."))
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def _format_of(path: Path) -> Format:
    if path.name.endswith(".parquet"):
        return "parquet"
    if path.name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    return "text"


def _suffixes(fmt: Format) -> tuple[str, ...]:
    return {"parquet": (".parquet",), "jsonl": JSONL_SUFFIXES, "text": TEXT_SUFFIXES}[fmt]


def source_spec(source: str) -> CorpusSpec:
    """The source of ``lossweep data prepare``: ``stdlib``, ``text:PATH`` (as ``--data`` and a spec write
    it) or a bare path (a text, JSONL or Parquet file or folder)."""
    try:
        parsed = CorpusSpec.parse(source)
    except CorpusError:
        return CorpusSpec("text", source)  # a bare path
    if parsed.kind not in ("stdlib", "text"):
        raise PrepareError(f"source {source!r}: give 'stdlib', text:PATH or a path; {parsed.kind}: is not prepared")
    return parsed


def _recorded_source(source: str) -> str:
    parsed = source_spec(source)
    return "stdlib" if parsed.kind == "stdlib" else str(Path(parsed.path).expanduser().resolve())


def find_units(source: str, *, fmt: str = "auto") -> list[Unit]:
    """The units of ``source`` in corpus order; ``PrepareError`` for a missing, empty or unreadable one."""
    if fmt not in FORMATS:
        raise PrepareError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    parsed = source_spec(source)
    if parsed.kind == "stdlib":
        root = stdlib_root()
        files = stdlib_files(root)
        chosen: Format = "text"
    else:
        root = Path(parsed.path).expanduser()
        if not root.exists():
            raise PrepareError(f"source {root} does not exist; give a file, a folder or 'stdlib'")
        if root.is_file():
            files = [root]
            chosen = _format_of(root) if fmt == "auto" else fmt  # type: ignore[assignment]
        else:
            chosen = fmt if fmt != "auto" else "text"  # type: ignore[assignment]
            if fmt == "auto":
                for candidate in ("parquet", "jsonl"):
                    if _files(root, _suffixes(candidate)):  # type: ignore[arg-type]
                        chosen = candidate  # type: ignore[assignment]
                        break
            files = _files(root, _suffixes(chosen))
    if not files:
        raise PrepareError(f"source {source!r} holds no {'/'.join(_suffixes(chosen))} files")
    units: list[Unit] = []
    for path in files:
        _check_readable(path)
        rel = path.name if path == root else path.relative_to(root).as_posix()
        if chosen == "parquet":
            units.extend(_parquet_units(path, rel, len(units)))
        elif chosen == "jsonl" and path.stat().st_size > JSONL_UNIT_BYTES:
            size = path.stat().st_size
            for start in range(0, size, JSONL_UNIT_BYTES):
                end = min(start + JSONL_UNIT_BYTES, size)
                units.append(Unit(index=len(units), path=str(path), rel=rel, fmt="jsonl", size=end - start,
                                  start=start, end=end))  # fmt: skip
        else:
            units.append(Unit(index=len(units), path=str(path), rel=rel, fmt=chosen, size=path.stat().st_size))
    if chosen == "text" and len(units) == 1:
        units[0] = Unit(**{**asdict(units[0]), "whole_split": True})
    return units


def _check_readable(path: Path) -> None:
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise PrepareError(f"source file {path} is not readable ({exc.strerror or exc})") from None


def _parquet_units(path: Path, rel: str, start: int) -> list[Unit]:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as exc:
        raise PrepareError(f"source file {path} is not a readable Parquet file ({_first_line(exc)})") from None
    units, row = [], 0
    size = path.stat().st_size
    for g in range(meta.num_row_groups):
        rows = meta.row_group(g).num_rows
        share = size * rows // max(meta.num_rows, 1)
        units.append(Unit(index=start + g, path=str(path), rel=rel, fmt="parquet", size=share, row_group=g,
                          first_row=row))  # fmt: skip
        row += rows
    return units


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def iter_documents(unit: Unit, field: str) -> Iterator[tuple[str, str]]:
    """``(key, text)`` of the unit's documents, in order; ``PrepareError`` on malformed records."""
    if unit.fmt == "text":
        text = Path(unit.path).read_bytes().decode("utf-8", errors="replace")
        if text.strip():
            yield unit.rel, text
    elif unit.fmt == "jsonl":
        with open(unit.path, "rb") as fh:
            if unit.start > 0:  # skip the line that began before this range: the previous unit reads it
                fh.seek(unit.start - 1)
                fh.readline()
            while unit.end < 0 or fh.tell() < unit.end:
                offset = fh.tell()
                line = fh.readline()
                if not line:
                    break
                if not line.strip():
                    continue
                where = f"{unit.path} (the line at byte {offset})"
                try:
                    record = json.loads(line)
                except ValueError:
                    raise PrepareError(f"{where} is not a JSON object") from None
                text = record.get(field) if isinstance(record, dict) else None
                if not isinstance(text, str):
                    raise PrepareError(f"{where} has no string field {field!r}; set it with --field")
                yield f"{unit.rel}@{offset}", text
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(unit.path)
        if field not in pf.schema_arrow.names:
            raise PrepareError(
                f"{unit.path} has no column {field!r} (columns: {', '.join(pf.schema_arrow.names)}); "
                "set it with --field"
            )
        col = pf.read_row_group(unit.row_group, columns=[field]).column(field)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            raise PrepareError(f"{unit.path}: column {field!r} holds {col.type}, not text")
        for i, text in enumerate(col.to_pylist()):
            if text:
                yield f"{unit.rel}#{unit.first_row + i}", text


def tokenize_unit(unit: Unit, tok: ByteTokenizer | BPETokenizer, field: str) -> dict[str, Any]:
    """The unit's training and validation ids (each document followed by EOT) and document counts."""
    train: list[str] = []
    val: list[str] = []
    for key, text in iter_documents(unit, field):
        if unit.whole_split:
            cut = int(len(text) * (100 - VAL_PERCENT) / 100)
            train.append(text[:cut])
            val.append(text[cut:])
        else:
            (val if is_val_document(key) else train).append(text)
    ids = {"train": tok.encode_documents(train), "val": tok.encode_documents(val)}
    for arr in ids.values():
        if arr.size and int(arr.max()) >= tok.vocab_size:
            raise PrepareError(f"tokenizer {tok.spec!r} made id {int(arr.max())}, outside its {tok.vocab_size} ids")
    return {
        "index": unit.index,
        "train": ids["train"].astype(np.uint32).tobytes(),
        "val": ids["val"].astype(np.uint32).tobytes(),
        "train_docs": len(train),
        "val_docs": len(val),
        "size": unit.size,
    }


# ---------------------------------------------------------------------------------------------- tokenizer
def build_tokenizer(spec: str, units: list[Unit], field: str) -> tuple[ByteTokenizer | BPETokenizer, bytes]:
    """The tokenizer and the bytes of its file; ``bpe:N`` is trained on the first ``BPE_SAMPLE_BYTES``
    of training documents (in corpus order, so deterministic)."""
    kind, _ = parse_tokenizer_spec(spec)
    docs: list[str] = []
    if kind == "bpe":
        budget = BPE_SAMPLE_BYTES
        for unit in units:
            for key, text in iter_documents(unit, field):
                if unit.whole_split:
                    text = text[: int(len(text) * (100 - VAL_PERCENT) / 100)]
                elif is_val_document(key):
                    continue
                docs.append(text)
                budget -= len(text)
                if budget <= 0:
                    break
            if budget <= 0:
                break
    tok = train_tokenizer(spec, docs)
    if kind == "hf":  # the user's file byte for byte: its hash in the manifest is the file they hold
        return tok, read_hf_tokenizer(spec)
    with tempfile.TemporaryDirectory() as tmp:
        tok.save(Path(tmp) / "tokenizer.json")
        return tok, (Path(tmp) / "tokenizer.json").read_bytes()


class _TokenizeUnits:
    """A Ray Data actor: loads the tokenizer once, then tokenizes batches of units."""

    def __init__(self, spec: str, blob: bytes, field: str) -> None:
        self.tok = tokenizer_from_bytes(spec, blob)
        self.field = field

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        import pyarrow as pa

        keys = list(Unit.__dataclass_fields__)
        rows = []
        for i in range(len(batch["index"])):
            unit = Unit(**{k: _plain(batch[k][i]) for k in keys})
            try:
                rows.append({**tokenize_unit(unit, self.tok, self.field), "error": None})
            except (CorpusError, OSError, UnicodeError) as exc:  # bad input: a message for the user, not a crash
                message = str(exc) if isinstance(exc, CorpusError) else f"{unit.path}: {_first_line(exc)}"
                rows.append({"index": unit.index, "train": b"", "val": b"", "train_docs": 0, "val_docs": 0,
                             "size": unit.size, "error": message})  # fmt: skip
        # ids travel as Arrow binary: a numpy bytes array would strip trailing zero bytes (id 0)
        columns = {k: [r[k] for r in rows] for k in _OUT}
        types = {"train": pa.large_binary(), "val": pa.large_binary(), "error": pa.string()}
        return pa.table({k: pa.array(v, type=types.get(k, pa.int64())) for k, v in columns.items()})


_OUT = ("index", "train", "val", "train_docs", "val_docs", "size", "error")


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


# ---------------------------------------------------------------------------------------------- pipeline
@dataclass(frozen=True)
class Plan:
    """What ``prepare`` will do, checked before any Ray work: the units, the tokenizer, the dtype."""

    source: str
    spec: str
    units: list[Unit]
    tokenizer: ByteTokenizer | BPETokenizer
    tokenizer_file: bytes
    field: str
    dtype: str


def make_plan(source: str, tokenizer: str, *, fmt: str = "auto", field: str = "text", dtype: str = "auto") -> Plan:
    """Reads the source's listing and builds (or trains) the tokenizer; ``CorpusError``/``ValueError``
    with one line on bad input (a missing or unreadable file, a vocabulary the dtype cannot hold)."""
    parse_tokenizer_spec(tokenizer)
    units = find_units(source, fmt=fmt)
    tok, blob = build_tokenizer(tokenizer, units, field)
    return Plan(source, tokenizer, units, tok, blob, field, shard_dtype(tok.vocab_size, dtype))


@dataclass(frozen=True)
class Progress:
    units_done: int
    units: int
    bytes_done: int
    bytes_total: int
    tokens: int


def prepare(
    plan: Plan,
    out: str,
    *,
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    concurrency: int | None = None,
    overwrite: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """Tokenizes the plan's source into a shard set at ``out`` on the connected Ray cluster (``ray.init``
    first); returns the manifest. See the module docstring."""
    import ray

    units, tok, blob, field, source = plan.units, plan.tokenizer, plan.tokenizer_file, plan.field, plan.source
    total = sum(u.size for u in units)
    workers = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)))
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # shards in unit order: the determinism of the output
    ctx.enable_progress_bars = False
    ds = ray.data.from_items([asdict(u) for u in units], override_num_blocks=min(len(units), 1024))
    with warnings.catch_warnings():
        # max_restarts goes through Ray's generic remote arguments, which 2.60 flags as deprecated; without
        # it Ray logs an error per actor (restartable actors with constructor arguments in the object store)
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = ds.map_batches(
            _TokenizeUnits,
            fn_constructor_args=(plan.spec, blob, field),
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=min(workers, len(units))),
            num_cpus=1,
            max_restarts=0,  # a failed actor fails the prepare (rerun it), as any other error does
        )
    source_info = {
        "source": _recorded_source(source),
        "format": units[0].fmt,
        "field": field if units[0].fmt != "text" else None,
        "units": len(units),
        "bytes": total,
    }
    docs = {"train": 0, "val": 0}
    with ShardWriter(
        out,
        vocab_size=tok.vocab_size,
        eot_id=tok.eot_id,
        tokenizer_spec=plan.spec,
        tokenizer_file=blob,
        dtype=plan.dtype,
        shard_tokens=shard_tokens,
        overwrite=overwrite,
    ) as writer:
        done = done_bytes = 0
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2):
            for row in batch.to_pylist():
                if row["error"]:
                    raise PrepareError(row["error"])
                if row["index"] != done:  # a broken order would break determinism silently
                    raise RuntimeError(f"unit {row['index']} arrived when {done} was due")
                for split in ("train", "val"):
                    writer.add(split, np.frombuffer(row[split], dtype=np.uint32))
                    docs[split] += row[f"{split}_docs"]
                done += 1
                done_bytes += row["size"]
                if on_progress is not None:
                    on_progress(Progress(done, len(units), done_bytes, total, sum(writer.tokens.values())))
        for split in ("train", "val"):
            if writer.tokens[split] == 0:
                raise PrepareError(
                    f"source {source!r}: no document fell into the {split} split ({VAL_PERCENT} % of documents, "
                    f"chosen by a hash of their names, go to validation); give more documents, or one text file "
                    "(split at 90 % of its length)"
                )
        return writer.finish({**source_info, "documents": docs})


__all__ = ["Plan", "PrepareError", "ShardError", "Unit", "find_units", "make_plan", "prepare", "tokenize_unit"]
