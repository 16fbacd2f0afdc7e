"""``lossweep presets``: the named sweeps (``--models``: the model presets with parameter counts;
``--losses``: the loss terms of the registry, built-in and from installed plugins)."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def presets(
    models: Annotated[bool, typer.Option("--models", help="List the model presets with parameter counts.")] = False,
    losses: Annotated[
        bool, typer.Option("--losses", help="List the loss terms (built-in and plugins) with their coefficients.")
    ] = False,
    vocab_size: Annotated[
        int | None, typer.Option(help="Vocabulary size for the parameter counts (default: each preset's own).")
    ] = None,
    memory: Annotated[
        bool,
        typer.Option(
            "--memory",
            help="Which OEC sizes fit one rank on an 80 GB and a 141 GB GPU at the paper's batch (64 x 2048, "
            "bf16), and in how many micro-batches (--micro-batch); a Markdown table from the memory estimate.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the sweep presets (run one with: lossweep sweep run PRESET); --models: the model presets;
    --losses: the loss terms."""
    from rich.console import Console
    from rich.table import Table

    if losses:
        _print_losses(as_json)
        return
    if memory:
        _print_memory_fit(as_json)
        return

    if models:
        from trainables.model.presets import list_model_presets

        # params: every distinct tensor; non_embedding: without the V x d matrices; paper_params: as the
        # OEC paper names its models (non-embedding + one V x d matrix, as if tied)
        rows = [
            {"name": name, "params": n, "non_embedding_params": cfg.non_embedding_params(),
             "paper_params": cfg.paper_params(), "n_layer": cfg.n_layer, "n_embd": cfg.n_embd,
             "n_head": cfg.n_head, "mlp_hidden": cfg.hidden_dim, "vocab_size": cfg.vocab_size,
             "tie_weights": cfg.tie_weights}
            for name, (cfg, n) in list_model_presets(vocab_size).items()
        ]  # fmt: skip
        if as_json:
            print(json.dumps(rows))
            return
        table = Table(title="model presets (paper count: non-embedding + one V x d matrix, as the paper names them)")
        for col in ("name", "params", "non-emb", "paper count", "layers", "d_model", "heads", "mlp", "vocab", "tied"):
            table.add_column(col, justify="left" if col == "name" else "right")
        for r in rows:
            table.add_row(r["name"], f"{r['params'] / 1e6:.2f}M", f"{r['non_embedding_params'] / 1e6:.2f}M",
                          f"{r['paper_params'] / 1e6:.2f}M", str(r["n_layer"]), str(r["n_embd"]),
                          str(r["n_head"]), str(r["mlp_hidden"]), str(r["vocab_size"]),
                          "yes" if r["tie_weights"] else "no")  # fmt: skip
        Console().print(table)
        return

    from search_spaces.spec.presets import get_preset, list_presets

    rows = []
    for name, description in list_presets().items():
        spec = get_preset(name)
        rows.append({"name": name, "description": description, "search": spec.search.algorithm,
                     "methods": spec.methods, "num_trials": spec.num_trials()})  # fmt: skip
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title="sweep presets (lossweep sweep run PRESET [--set key=value])")
    for col in ("name", "search", "trials", "description"):
        table.add_column(col, justify="right" if col == "trials" else "left")
    for r in rows:
        table.add_row(r["name"], r["search"], str(r["num_trials"]), r["description"])
    Console().print(table)


def _print_losses(as_json: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from trainables.losses.registry import TERMS

    rows = [
        {"name": t.name, "kind": t.kind, "label": t.label, "source": t.source, "summary": t.summary,
         "coefficients": {t.flat_name(c.name): {"kind": c.kind, "default": c.default, "positive": c.positive,
                                                "log_scale": c.log_scale, "low": c.low, "high": c.high, "doc": c.doc}
                          for c in t.coefficients}}
        for t in TERMS.values()
    ]  # fmt: skip
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title="loss terms (--loss NAME[=WEIGHT], methods: [NAME, NAME+NAME, ...]; baseline = none)")
    table.add_column("name", no_wrap=True)
    table.add_column("kind")
    table.add_column("coefficients (default)", overflow="fold")
    table.add_column("source")
    table.add_column("what it does")
    for r in rows:
        coeffs = "\n".join(f"{k}={v['default']}" for k, v in r["coefficients"].items()) or "-"
        table.add_row(r["name"], r["kind"], coeffs, r["source"], r["summary"])
    Console().print(table)


PAPER_BATCH, PAPER_SEQ_LEN, PAPER_WORKERS = 64, 2048, (1, 2, 4)


def _print_memory_fit(as_json: bool) -> None:
    from trainables.model.memory import GIB, GPU_USABLE_BYTES, estimate_rank_memory, fewest_micro_steps
    from trainables.model.presets import PAPER_PRESETS, model_preset

    rows = []
    for name in PAPER_PRESETS:
        cfg = model_preset(name)
        for workers in PAPER_WORKERS:
            sequences = PAPER_BATCH // workers
            row = {"model": name, "workers": workers, "sequences_per_rank": sequences,
                   "estimate_gib": estimate_rank_memory(cfg, sequences=sequences, seq_len=PAPER_SEQ_LEN).total / GIB}
            for gpu, usable in GPU_USABLE_BYTES.items():
                steps = fewest_micro_steps(cfg, sequences=sequences, seq_len=PAPER_SEQ_LEN, gpu_bytes=usable)
                row[gpu] = None if steps is None else {"micro_steps": steps, "micro_batch": sequences // steps}
            rows.append(row)  # fmt: skip
    if as_json:
        print(json.dumps(rows))
        return

    def cell(fit: dict[str, int] | None) -> str:
        if fit is None:
            return "does not fit"
        if fit["micro_steps"] == 1:
            return "fits in one pass"
        return f"{fit['micro_steps']} x `micro_batch: {fit['micro_batch']}`"

    gpus = list(GPU_USABLE_BYTES)
    heads = " | ".join(f"{g} GPU" for g in gpus)
    print(f"| model | workers | sequences per rank | estimate, one pass (GiB) | {heads} |")
    print("|---|---|---|---|" + "---|" * len(gpus))
    for r in rows:
        fits = " | ".join(cell(r[g]) for g in gpus)
        print(f"| {r['model']} | {r['workers']} | {r['sequences_per_rank']} | {r['estimate_gib']:.1f} | {fits} |")


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the ``lossweep`` app."""
    app.command("presets")(presets)
