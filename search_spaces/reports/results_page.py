"""The results page (``docs/results.md``): its numbers come from the study data committed beside it.

A study's data is a trimmed sweep directory under the data folder (``docs/results/<study>/``): the spec,
the manifest (code version, packages), the final progress, ``trials.parquet`` and ``metrics.parquet``,
the files the sweep report reads, so ``lossweep sweep report`` rebuilds a study's full report from it.

The page is prose with generated blocks. A block is written between two markers::

    <!-- generated: study lr-sensitivity summary,lrs -->
    ...what render() writes...
    <!-- end generated -->

``render`` rewrites every block from the data; ``stale_blocks`` names those whose text differs from what
the data gives, which is how a number typed by hand, or data re-run without regenerating, is caught.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from search_spaces.analysis import paper_reference, stats
from search_spaces.analysis.sizes import of_size
from search_spaces.analysis.trial_frame import float_key
from search_spaces.reports import report_markdown
from search_spaces.reports.report import Report, build, scrub_location
from search_spaces.reports.report_text import (
    duration,
    fmt,
    fmt_lr,
    fmt_tokens,
    interval_text,
    md_table,
    method_name,
    p_text,
)
from search_spaces.run import results
from search_spaces.run.sweep_dir import (
    FINAL_SWEEP_STATUSES,
    MANIFEST_FILE,
    METRICS_FILE,
    PROGRESS_FILE,
    SPEC_FILE,
    TRIALS_FILE,
    read_json,
    trial_manifest_path,
)

#: The files of a sweep directory a study keeps: what the report reads, nothing per trial.
STUDY_FILES: tuple[str, ...] = (SPEC_FILE, MANIFEST_FILE, PROGRESS_FILE, TRIALS_FILE, METRICS_FILE)
#: All study data together stays under this many bytes, so the repository stays small.
SIZE_BUDGET_BYTES = 4 * 1024 * 1024
#: What a study keeps of each trial's own manifest, as columns of its trials table: the code version the
#: trial ran (so a table mixing versions shows it), its parameter count and the machine's platform.
TRIAL_RECORD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("git_sha", "string"),
    ("num_params", "int64"),
    ("platform", "string"),
)

BEGIN = "<!-- generated: "
END = "<!-- end generated -->"
_BLOCK = re.compile(rf"({re.escape(BEGIN)}(?P<head>[^>]*?) -->\n)(?P<body>.*?)({re.escape(END)})", re.S)


class PageError(ValueError):
    """A block the page asks for cannot be generated (unknown kind, missing study, bad argument)."""


# ---------------------------------------------------------------------------------------------------
# Collecting a finished sweep as a study
# ---------------------------------------------------------------------------------------------------


def collect(sweep_dir: str | Path, data_dir: str | Path) -> Path:
    """Copies the study files of a finished sweep into ``data_dir/<spec name>/`` (replacing what was there)
    with the sweep's location taken out of its JSON files and the tables rewritten compressed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = Path(sweep_dir)
    missing = [name for name in STUDY_FILES if not (src / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{src} is not a finished sweep directory: {', '.join(missing)} missing")
    status = (results.read_progress(str(src)) or {}).get("status")
    if status not in FINAL_SWEEP_STATUSES:
        raise ValueError(f"{src}: the sweep has not ended (status {status!r})")
    name = results.load_spec(src / SPEC_FILE).name
    dest = Path(data_dir) / name
    staging = Path(data_dir) / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    location = str(src.resolve())
    shutil.copyfile(src / SPEC_FILE, staging / SPEC_FILE)
    for name_ in (MANIFEST_FILE, PROGRESS_FILE):
        doc = scrub_location(json.loads((src / name_).read_text()), location)
        (staging / name_).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    trials = pq.read_table(src / TRIALS_FILE)
    manifests = [_trial_manifest(src, str(t)) for t in trials.column("trial_id").to_pylist()]
    for column, kind in TRIAL_RECORD_COLUMNS:
        values = pa.array([m.get(column) for m in manifests], type=pa.type_for_alias(kind))
        trials = trials.append_column(column, values)
    pq.write_table(trials, staging / TRIALS_FILE, compression="zstd", compression_level=19)
    pq.write_table(pq.read_table(src / METRICS_FILE), staging / METRICS_FILE, compression="zstd", compression_level=19)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return dest


def _trial_manifest(sweep_dir: Path, trial_id: str) -> dict[str, Any]:
    return read_json(trial_manifest_path(str(sweep_dir), trial_id)) or {}


def data_size(data_dir: str | Path) -> int:
    """Bytes of every file under ``data_dir``."""
    return sum(p.stat().st_size for p in Path(data_dir).rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------------
# The blocks
# ---------------------------------------------------------------------------------------------------


class _Studies:
    """Reports of the studies under the data folder, built once per render."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._reports: dict[str, Report] = {}

    def report(self, name: str) -> Report:
        if name not in self._reports:
            path = self.data_dir / name
            if not (path / TRIALS_FILE).is_file():
                raise PageError(f"no study data for {name!r} under {self.data_dir}")
            self._reports[name] = build(str(path))
        return self._reports[name]


def _demoted(lines: Sequence[str]) -> list[str]:
    """The report's headings one level lower, to sit under the page's own section heading."""
    return [f"#{line}" if line.startswith("#") else line for line in lines]


def _recorded(trials: Any, column: str, show: Callable[[Any], str] = str) -> str:
    """The one value a study's trials share in ``column`` (several, comma-separated, if they differ)."""
    values = sorted({show(v) for v in trials[column].dropna()}) if column in trials.columns else []
    return ", ".join(values) or "unknown"


def _models(preset: str | list[str], trials: Any) -> str:
    """The model of a study, or each of its sizes, with the parameter count its trials recorded."""
    if isinstance(preset, str):
        return f"model `{preset}` ({_recorded(trials, 'num_params', lambda n: f'{int(n):,}')} parameters)"
    counts = ", ".join(
        f"`{size}` ({_recorded(of_size(trials, size), 'num_params', lambda n: f'{int(n):,}')})" for size in preset
    )
    return f"{len(preset)} model sizes with their parameter counts: {counts}"


def _summary(report: Report, name: str, trials: Any) -> list[str]:
    data = report.data
    s = data["sweep"]
    manifest = s.get("manifest") or {}
    spec = s.get("spec") or {}
    stages = Counter(t.get("stage") or "search" for t in data["trials"])
    steps = {t["steps"] for t in data["trials"] if t.get("steps") is not None}
    tokens_each = {t["tokens"] for t in data["trials"] if t.get("tokens") is not None}
    model = spec.get("model", {}).get("preset", "?")
    d = spec.get("data", {})
    return [
        f"- data: `docs/results/{name}/` · spec: `docs/studies/{name}.yaml` · code version of the trials "
        f"`{_recorded(trials, 'git_sha', lambda sha: str(sha)[:12])}`",
        f"- {s['trials']} trials ({stages['search']} search, {stages['confirm']} confirm); {_models(model, trials)}, "
        f"corpus `{d.get('corpus')}`, tokenizer `{d.get('tokenizer')}` (V = {s.get('vocab_size')}), "
        f"T = {d.get('seq_len')}, batch {d.get('batch_size')}",
        f"- {', '.join(str(x) for x in sorted(steps))} steps = {', '.join(fmt_tokens(x) for x in sorted(tokens_each))}"
        f" tokens per trial; sweep wall time {duration(s.get('elapsed_s'))}, trial time (sum) "
        f"{duration(s.get('trial_wall_time_s'))}",
        f"- measured: {data['measured']} (test split: {fmt_tokens(d.get('test_tokens'))} tokens per run, "
        f"evaluated once at the end); L0 = ln V = {fmt(s.get('l0'), 3)}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in (manifest.get("versions") or {}).items())
        + f"; platform {_recorded(trials, 'platform')}",
        "",
    ]


def _study(studies: _Studies, args: Sequence[str]) -> list[str]:
    if not args:
        raise PageError("a study block names its study: 'study NAME [section,...]'")
    name = args[0]
    wanted = args[1].split(",") if len(args) > 1 else ["summary", *report_markdown.SECTIONS]
    report = studies.report(name)
    out: list[str] = []
    for section in wanted:
        if section == "summary":
            out += _summary(report, name, results.read_trials(studies.data_dir / name))
        elif section in report_markdown.SECTIONS:
            out += _demoted(report_markdown.SECTIONS[section](report.data))
        else:
            known = ", ".join(["summary", *report_markdown.SECTIONS])
            raise PageError(f"study {name}: unknown section {section!r}; known: {known}")
    return out


def _families(report: Report) -> dict[str, dict[str, Any]]:
    """The LR-sensitivity families of a study by method (one family per method: fixed coefficients)."""
    return {f["method"]: f for f in report.data["lr_sensitivity"]["families"] if f.get("K", 0) >= 2}


def _ratio(value: float | None, base: float | None) -> str:
    return "–" if value is None or not base else f"{value / base:.2f}"


def _paper_lrs(studies: _Studies, args: Sequence[str]) -> list[str]:
    if len(args) != 1:
        raise PageError("a paper-lrs block names the LR study beside which the paper is shown")
    families = _families(studies.report(args[0]))
    if "baseline" not in families:
        raise PageError(f"study {args[0]} has no baseline LR-sensitivity family")
    grid = families["baseline"]["lrs_grid"]
    full = paper_reference.paper_lrs_by_size()
    subset = paper_reference.paper_lrs_by_size(lrs=grid)
    sizes = list(full)
    methods = [m for m in families if m in {m_ for s in full.values() for m_ in s} or m == "softcap"]
    ours_base = families["baseline"]["lrs"]
    out = [
        f"LRS (lower is more robust). Here: over this study's {len(grid)} learning rates "
        f"({', '.join(fmt_lr(x) for x in grid)}) with its bootstrap interval. Paper: over its seven learning rates "
        f"(3e-4 … 3e-1) and, in the second table, recomputed from its published runs on this study's learning rates "
        f"only; λ = 1e-4, no weight tying (soft-capping was run only with tied weights, at 221M: "
        f"{fmt(paper_reference.PAPER_LRS_TIED_221M['softcap'], 3)}).",
        "",
    ]
    out += md_table(
        ["method", "here [95% CI]", *[f"paper {s}" for s in sizes]],
        [
            [method_name(m), interval_text(families[m]["lrs"], families[m]["lrs_low"], families[m]["lrs_high"], 3)]
            + [fmt(full[s].get(m), 3) for s in sizes]
            for m in methods
        ],
    )
    out += ["Relative LRS (method / baseline), and the paper's on this study's learning rates:", ""]
    out += md_table(
        ["method", "here", *[f"paper {s}" for s in sizes], *[f"paper {s}, this grid" for s in sizes]],
        [
            [method_name(m), _ratio(families[m]["lrs"], ours_base)]
            + [_ratio(full[s].get(m), full[s].get("baseline")) for s in sizes]
            + [_ratio(subset.get(s, {}).get(m), subset.get(s, {}).get("baseline")) for s in sizes]
            for m in methods
        ],
    )
    return out


def _paper_per_lr(studies: _Studies, args: Sequence[str]) -> list[str]:
    if len(args) != 1:
        raise PageError("a paper-per-lr block names the LR study beside which the paper is shown")
    report = studies.report(args[0])
    families = _families(report)
    runs = paper_reference.read_paper_runs()
    runs = runs[(runs["coefficient"] == 0) | runs["coefficient"].map(lambda c: math.isclose(c, 1e-4))]
    runs = runs.assign(lr_key=runs["lr"].map(float_key))
    sizes = list(paper_reference.paper_lrs_by_size())
    out = [
        f"Mean {report.data['measured']} per learning rate over seeds [95% t-interval] here; the paper's final "
        "test loss (mean over its seeds, λ = 1e-4) at the same learning rate beside it, smallest and largest size. "
        f"The two are on different scales (V = {report.data['sweep']['vocab_size']} here, "
        f"{paper_reference.PAPER_VOCAB_SIZE:,} there): compare how each changes along the learning rates, "
        "not the values.",
        "",
    ]
    rows = []
    for method, family in families.items():
        for cell in family["cells"]:
            paper = runs[(runs["method"] == method) & (runs["lr_key"] == float_key(cell["lr"]))]
            by_size = paper.groupby("size")["test_loss"].mean().to_dict()
            here = interval_text(cell["mean"], cell["low"], cell["high"], 3)
            rows.append(
                [method_name(method), fmt_lr(cell["lr"]), cell["n"], here]
                + [fmt(by_size.get(s), 3) for s in (sizes[0], sizes[-1])]
            )
    out += md_table(["method", "lr", "seeds", "here [95% CI]", f"paper {sizes[0]}", f"paper {sizes[-1]}"], rows)
    return out


def _lambda_cells(studies: _Studies, args: Sequence[str]) -> list[str]:
    """Per method, coefficient value and learning rate: the mean measured loss over seeds with its 95%
    t-interval, and its paired difference (same seed, same learning rate) against the method's smallest
    coefficient, with interval, p and verdict (``search_spaces.analysis.stats``)."""
    if len(args) != 1:
        raise PageError("a lambda-cells block names its study")
    data = studies.report(args[0]).data
    by_method: dict[str, list[dict[str, Any]]] = {}
    for fam in data["lr_sensitivity"]["families"]:
        coefficients = fam.get("coefficients") or {}
        if len(coefficients) == 1:
            by_method.setdefault(fam["method"], []).append(fam)
    rows = []
    for method, fams in by_method.items():
        fams = sorted(fams, key=lambda f: next(iter(f["coefficients"].values())))
        if len(fams) < 2:
            continue
        reference = {c["lr"]: c for c in fams[0]["cells"]}
        for fam in fams:
            (name, value), = fam["coefficients"].items()
            for cell in fam["cells"]:
                ref = reference.get(cell["lr"])
                pair = "reference"
                verdict_text, p_value = "", p_text(None)
                if fam is not fams[0] and ref is not None:
                    seeds = sorted(set(cell["seeds"]) & set(ref["seeds"]))
                    c = stats.paired_difference([cell["seeds"][k] for k in seeds], [ref["seeds"][k] for k in seeds])
                    pair = interval_text(c.mean, c.low, c.high, 3, signed=True)
                    verdict_text = c.verdict
                    p_value = p_text(c.p)
                rows.append([method_name(method), f"{name} = {value:g}", fmt_lr(cell["lr"]), cell["n"],
                             interval_text(cell["mean"], cell["low"], cell["high"], 3), pair, p_value,
                             verdict_text])  # fmt: skip
    if not rows:
        return ["No method of this study swept one coefficient over two or more values.", ""]
    return [
        f"Mean {data['measured']} over seeds [95% t-interval] per cell; Δ is paired on the seed against the same "
        "method's smallest coefficient at the same learning rate (positive: the larger coefficient is worse).",
        "",
        *md_table(["method", "coefficient", "lr", "n", "mean [95% CI]", "Δ vs smallest [95% CI]", "p", "verdict"],
                  rows),
    ]


#: Block kind → generator(studies, args) → lines.
BLOCKS: dict[str, Callable[[_Studies, Sequence[str]], list[str]]] = {
    "study": _study,
    "paper-lrs": _paper_lrs,
    "paper-per-lr": _paper_per_lr,
    "lambda-cells": _lambda_cells,
}


def _generate(head: str, studies: _Studies) -> str:
    kind, *args = head.split()
    if kind not in BLOCKS:
        raise PageError(f"unknown block kind {kind!r}; known: {', '.join(BLOCKS)}")
    lines = BLOCKS[kind](studies, args)
    while lines and lines[-1] == "":
        lines = lines[:-1]
    return "\n".join(lines) + "\n"


def render(page: str, data_dir: str | Path) -> str:
    """``page`` with every generated block rewritten from the study data under ``data_dir``."""
    studies = _Studies(Path(data_dir))
    return _BLOCK.sub(lambda m: m.group(1) + _generate(m.group("head"), studies) + m.group(4), page)


def stale_blocks(page: str, data_dir: str | Path) -> list[str]:
    """The heads of the blocks whose text differs from what the data gives (empty: the page is current)."""
    now = _BLOCK.finditer(page)
    fresh = _BLOCK.finditer(render(page, data_dir))
    return [m.group("head") for m, new in zip(now, fresh, strict=True) if m.group("body") != new.group("body")]
