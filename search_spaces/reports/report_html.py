"""``report.html``: one self-contained page (inline CSS and SVG, no scripts, no external assets)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

import yaml

from search_spaces.analysis import paper_reference, trial_frame
from search_spaces.reports.insights_report import importance_html, mechanism_html
from search_spaces.reports.plots import Plot
from search_spaces.reports.report import Report
from search_spaces.reports.report_text import (
    SIZE_CURVES_CAPTION,
    SIZE_HEADERS,
    TRIAL_HEADERS,
    coefficients_text,
    duration,
    family_name,
    fmt,
    fmt_lr,
    fmt_tokens,
    interval_text,
    method_name,
    p_text,
    power_text,
    resources_text,
    seed_speedup_text,
    single_lr_summary,
    size_curve_table,
    size_rows,
    speedup_targets_rows,
    status_line,
    stop_text,
    test_ce_text,
)
from search_spaces.run.sweep_dir import SweepStatus, TrialStatus
from trainables.losses.registry import TERMS

_CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#e4e7ee; --bg:#f6f7fb; --card:#fff; --accent:#2f5fd0;
  --ok:#1f8a4c; --warn:#b7791f; --bad:#b22222; }
* { box-sizing:border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
  color:var(--fg); background:var(--bg); }
main { max-width:1080px; margin:0 auto; padding:24px 28px 64px; }
header.top { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:20px 24px; }
h1 { font-size:1.55rem; margin:0 0 4px; }
h2 { font-size:1.2rem; margin:36px 0 10px; padding-bottom:6px; border-bottom:2px solid var(--line); }
h3 { font-size:1.02rem; margin:22px 0 8px; }
p.sub, .muted { color:var(--muted); }
.badge { display:inline-block; padding:2px 10px; border-radius:999px; font-size:.8rem; font-weight:600;
  letter-spacing:.03em; vertical-align:middle; margin-left:8px; color:#fff; background:var(--muted); }
.stats { display:grid; grid-template-columns:repeat(auto-fit,minmax(150px,1fr)); gap:10px; margin:16px 0 4px;
  align-items:start; }
.stat { background:var(--bg); border-radius:8px; padding:8px 12px; }
.stat b { display:block; font-size:1.15rem; }
.stat span { color:var(--muted); font-size:.82rem; }
.counts span.c { display:inline-block; margin:2px 8px 2px 0; font-size:.85rem; }
.dot { display:inline-block; width:9px; height:9px; border-radius:50%; margin-right:4px; }
nav.toc { margin-top:14px; font-size:.9rem; }
nav.toc a { margin-right:14px; color:var(--accent); text-decoration:none; }
.callout { border-left:4px solid var(--warn); background:#fff8e6; padding:10px 14px; border-radius:6px;
  margin:18px 0; }
.callout ul { margin:4px 0 0 18px; padding:0; }
.rule { font-size:.85rem; color:var(--muted); margin:6px 0 10px; }
.table-wrap { overflow-x:auto; background:var(--card); border:1px solid var(--line); border-radius:8px; }
.table-wrap.tall { max-height:520px; overflow-y:auto; }
table { border-collapse:collapse; width:100%; font-size:.86rem; font-variant-numeric:tabular-nums; }
th, td { padding:6px 10px; text-align:left; border-bottom:1px solid var(--line); white-space:nowrap; }
th { background:#fafbfd; position:sticky; top:0; font-weight:600; }
td.num, th.num { text-align:right; }
tr.diverged td { color:var(--bad); }
.verdict.better { color:var(--good, #1f8a4c); font-weight:600; } .verdict.worse { color:var(--bad); font-weight:600; }
.verdict.unresolved { color:#666; }
tr.best td { background:#eef6ff; }
figure { margin:16px 0 20px; background:var(--card); border:1px solid var(--line); border-radius:10px;
  padding:14px 14px 8px; }
figure svg.plot { display:block; width:100%; height:auto; max-width:900px; margin:0 auto; }
figcaption { font-size:.85rem; color:var(--muted); margin-top:6px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(300px,1fr)); gap:12px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 16px; }
.card h3 { margin:0 0 4px; }
pre { background:#0f1522; color:#e6e9ef; padding:10px 12px; border-radius:8px; overflow-x:auto;
  font-size:.82rem; line-height:1.45; }
details { margin:10px 0; } summary { cursor:pointer; color:var(--accent); font-weight:600; }
a { color:var(--accent); }
footer { margin-top:40px; font-size:.8rem; color:var(--muted); }
"""

_BADGE_COLORS = {
    SweepStatus.SUCCEEDED: "var(--ok)",
    SweepStatus.RUNNING: "var(--accent)",
    SweepStatus.FAILED: "var(--bad)",
    SweepStatus.CANCELLED: "var(--bad)",
}
_CSS += "".join(f".badge.{status} {{ background:{color}; }}\n" for status, color in _BADGE_COLORS.items())

_STATUS_COLORS = {
    TrialStatus.PENDING: "#9aa3b2",
    TrialStatus.RUNNING: "#2f5fd0",
    TrialStatus.TERMINATED: "#1f8a4c",
    TrialStatus.STOPPED: "#b7791f",
    TrialStatus.DIVERGED: "#b22222",
    TrialStatus.ERROR: "#6b2fa0",
}


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, numeric: Iterable[int] = (), classes: Sequence[str] = ()
) -> str:
    numeric = set(numeric)
    head = "".join(
        f'<th{" class=num" if i in numeric else ""} scope="col">{escape(h)}</th>' for i, h in enumerate(headers)
    )
    body = []
    for index, row in enumerate(rows):
        cls = f' class="{classes[index]}"' if index < len(classes) and classes[index] else ""
        cells = "".join(f"<td{' class=num' if i in numeric else ''}>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(plot: Plot | None) -> str:
    if plot is None:
        return ""
    return f'<figure id="fig-{plot.name}">{plot.svg}<figcaption>{escape(plot.caption)}</figcaption></figure>'


def _missing(items: Sequence[str]) -> str:
    if not items:
        return ""
    lis = "".join(f"<li>{escape(m)}</li>" for m in items)
    return f'<div class="callout" role="note"><strong>What is missing</strong><ul>{lis}</ul></div>'


def _header(data: Mapping[str, Any]) -> str:
    s = data["sweep"]
    counts = "".join(
        f'<span class="c"><span class="dot" style="background:{_STATUS_COLORS.get(k, "#999")}"></span>'
        f"{escape(k.lower())} <b>{v}</b></span>"
        for k, v in s["counts"].items()
        if v or k in (TrialStatus.TERMINATED, TrialStatus.DIVERGED)
    )
    resources = s.get("resources") or {}
    res_text = resources_text(resources)
    manifest = s.get("manifest") or {}
    stats = [
        ("trials", f"{s['trials']}" + (f" / {s['total_trials']}" if s.get("total_trials") else "")),
        ("tokens trained", fmt_tokens(s["tokens"])),
        ("sweep wall time", duration(s.get("elapsed_s"))),
        ("trial time (sum)", duration(s.get("trial_wall_time_s"))),
        ("vocabulary / ln V", f"{s['vocab_size']} / {fmt(s['l0'], 3)}" if s.get("vocab_size") else "–"),
        ("resources per trial", res_text),
    ]
    if s["partial"] and s.get("eta_s") is not None:
        stats.insert(3, ("estimated time left", duration(s.get("eta_s"))))
    stat_html = "".join(f'<div class="stat"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for k, v in stats)
    # The driver nests package versions under "versions"; older manifests kept them at the top level.
    found = manifest.get("versions") if isinstance(manifest.get("versions"), dict) else manifest
    versions = ", ".join(f"{k} {found[k]}" for k in ("lossweep", "torch", "ray", "optuna", "python") if found.get(k))
    hashes = ", ".join(
        f"{k.replace('_', ' ')} <code>{escape(str(manifest[k]))}</code>"
        for k in ("git_sha", "spec_hash", "corpus_hash")
        if manifest.get(k)
    )
    spec_block = (
        "<details><summary>Sweep spec</summary>"
        f"<pre>{escape(yaml.safe_dump(s['spec'], sort_keys=False))}</pre></details>"
        if s.get("spec")
        else ""
    )
    manifest_block = (
        f"<details><summary>Manifest</summary><pre>{escape(json.dumps(manifest, indent=2, ensure_ascii=False))}"
        "</pre></details>"
        if manifest
        else ""
    )
    toc = "".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            *((("confirm", "Confirmed"),) if data["confirm"]["configs"] else ()),
            ("best", "Best configuration"),
            ("lrs", "LR sensitivity"),
            ("lambda", "λ robustness"),
            ("training", "Training curves"),
            ("speedup", "Speed-up"),
            ("importance", "Importance"),
            ("mechanism", "Mechanism vs LR"),
            ("trials", "Trials"),
        )
    )
    return (
        '<header class="top">'
        f'<h1>{escape(s["name"])}<span class="badge {escape(s["status"])}">'
        f"{escape(s['status'] + (' · partial' if s['partial'] else ''))}</span></h1>"
        f'<p class="sub">Sweep <code>{escape(s["id"])}</code> · {escape(status_line(data))}'
        + (f" · updated {escape(str(s['updated_at']))}" if s.get("updated_at") else "")
        + "</p>"
        f'<div class="stats">{stat_html}</div>'
        f'<div class="counts">{counts}</div>'
        + (f'<p class="muted">{escape(versions)}' + (f" · {hashes}" if hashes else "") + "</p>" if versions else "")
        + spec_block
        + manifest_block
        + f'<nav class="toc" aria-label="Sections">{toc}</nav>'
        "</header>"
    )


def _best(data: Mapping[str, Any]) -> str:
    best = data["best"]
    out = ['<h2 id="best">Best configuration</h2>', f'<p class="rule">Rule: {escape(best["rule"])}.</p>']
    overall = best.get("overall")
    if overall is None:
        out.append('<p class="muted">No best configuration yet (see what is missing above).</p>')
        return "".join(out)
    cards = [_best_card("Overall", overall, highlight=True)]
    for method, record in best["per_method"].items():
        cards.append(_best_card(method_name(method), record))
    out.append(f'<div class="cards">{"".join(cards)}</div>')
    return "".join(out)


def _best_card(title: str, r: Mapping[str, Any], *, highlight: bool = False) -> str:
    status = (
        ""
        if r["status"] == TrialStatus.TERMINATED
        else f" ({escape(r['status'].lower())}, so far)"
        if r["status"] == TrialStatus.RUNNING
        else f" ({escape(r['status'].lower())})"
    )
    lines = [
        f"<h3>{escape(title)}{' · ' + escape(method_name(r['method'])) if highlight else ''}</h3>",
        f"<p>validation CE <b>{fmt(r['val_loss'])}</b> at step {r['step']}{status}<br>"
        f'<span class="muted">lr {fmt_lr(r["params"].get("lr"))} · {escape(coefficients_text(r["params"]))}'
        f" · seed {r['seed']} · trial <code>{escape(r['trial_id'])}</code></span></p>",
        f"<details{' open' if highlight else ''}><summary>YAML to copy</summary>"
        f"<pre>{escape(r['yaml'])}</pre></details>",
    ]
    return f'<div class="card">{"".join(lines)}</div>'


def _sizes(data: Mapping[str, Any], plots: Mapping[str, Plot]) -> str:
    section = data.get("sizes")
    if not section:
        return ""
    headers, rows = size_curve_table(section)
    return (
        '<h2 id="sizes">Across model sizes</h2>'
        f'<p class="rule">{escape(section["rule"])}. {escape(section["paper_note"])}.</p>'
        + _figure(plots.get("sizes"))
        + _figure(plots.get("size-curves"))
        + '<div class="table-wrap">'
        + _table(list(SIZE_HEADERS), [[escape(c) for c in row] for row in size_rows(section)], numeric=(2, 3, 4, 6, 8))
        + "</div>"
        + f"<p>{escape(SIZE_CURVES_CAPTION)}</p>"
        + '<div class="table-wrap">'
        + _table(headers, [[escape(c) for c in row] for row in rows], numeric=range(2, len(headers)))
        + "</div>"
    )


def _lrs(data: Mapping[str, Any], plots: Mapping[str, Plot]) -> str:
    section = data["lr_sensitivity"]
    out = ['<h2 id="lrs">Learning-rate sensitivity</h2>', _figure(plots.get("lr-sensitivity"))]
    families = section["families"]
    if not families:
        out.append('<p class="muted">No finished trials yet.</p>')
        return "".join(out)
    rows, classes = [], []
    for f in [f for f in families if f["K"] >= 2 or f["lrs"] is not None]:
        lrs = interval_text(f["lrs"], f["lrs_low"], f["lrs_high"], 3)
        rows.append(
            [
                escape(family_name(f)),
                escape(trial_frame.format_coefficients(f["coefficients"])),
                str(f["K"]),
                lrs,
                str(f["n_seeds"]),
                str(f["diverged"]),
                fmt_lr(f["largest_stable_lr"]) if f["largest_stable_lr"] is not None else "none",
                escape(f["note"]),
            ]
        )
        classes.append("diverged" if f["diverged"] and f["largest_stable_lr"] is None else "")
    out.append("<h3>LRS per method</h3>")
    if rows:
        table = _table(
            ["method", "coefficients", "K (LRs)", "LRS [95% CI]", "seeds", "diverged", "largest stable LR", "note"],
            rows,
            numeric=(2, 3, 4, 5, 6),
            classes=classes,
        )
        out.append(f'<div class="table-wrap">{table}</div>')
    else:
        out.append('<p class="muted">No method has finished trials at two or more learning rates yet.</p>')
    out.extend(f'<p class="muted">{escape(line)}</p>' for line in single_lr_summary(families))
    out.append(
        f'<p class="rule">{escape(section["rule"])}. Largest stable LR: {escape(section["stable_rule"])}. '
        f'Interval: {escape(data["statistics"]["lrs_interval"])}.</p>'
    )
    diffs = data.get("lrs_differences") or []
    if diffs:
        lrows = [
            [escape(d["label"]), str(d["K"]), str(d["n_pairs"]), fmt(d["lrs"], 3), fmt(d["baseline_lrs"], 3),
             interval_text(d["lrs_delta"], d["lrs_delta_low"], d["lrs_delta_high"], 3, signed=True),
             _verdict(d["verdict"])]
            for d in diffs
        ]  # fmt: skip
        out.append(
            "<h3>LRS against baseline</h3>"
            + '<div class="table-wrap">'
            + _table(["method", "K", "seed pairs", "LRS", "baseline LRS", "ΔLRS [95% CI]", "verdict"], lrows,
                     numeric=(1, 2, 3, 4, 5))
            + "</div>"
        )
    paper = section.get("paper")
    if paper and paper.get("rows"):
        sizes = list(paper_reference.PAPER_LRS)
        prow = [
            [escape(method_name(r["method"])), fmt(r["ours"], 3)]
            + [fmt(r["paper"].get(s), 3) for s in sizes]
            + [fmt(r["paper_tied_221M"], 3)]
            for r in paper["rows"]
        ]
        out.append(
            '<h3>Beside the paper</h3><p class="rule">The sweep used the paper\'s LR grid '
            f"({', '.join(fmt_lr(x) for x in paper_reference.PAPER_LR_GRID)}), so its published LRS values are shown "
            f"beside ours. Source: {escape(paper['citation'])}. {escape(paper['note'])}.</p>"
            '<div class="table-wrap">'
            + _table(
                ["method", "this sweep", *[f"paper {s}" for s in sizes], "paper 221M tied"],
                prow,
                numeric=range(1, 3 + len(sizes)),
            )
            + "</div>"
        )
    deltas = data["paired_deltas"]["rows"]
    if deltas:
        drows = [
            [escape(d["label"]), fmt_lr(d["lr"]), str(d["n_pairs"]),
             interval_text(d["delta_mean"], d["delta_low"], d["delta_high"], signed=True), escape(p_text(d["p"])),
             _verdict(d["verdict"]), escape(power_text(d)), fmt(d["method_mean"]), fmt(d["baseline_mean"]),
             str(d["diverged"])]
            for d in deltas
        ]  # fmt: skip
        counts = {v: sum(d["verdict"] == v for d in deltas) for v in dict.fromkeys(d["verdict"] for d in deltas)}
        summary = ", ".join(f"{n} {v}" for v, n in counts.items())
        out.append(
            "<h3>Paired against baseline</h3>"
            f'<p class="rule">{escape(data["paired_deltas"]["rule"])}.</p>'
            + _evidence_rules(data)
            + f"<details open><summary>Deltas per learning rate ({len(drows)} rows: {escape(summary)})</summary>"
            '<div class="table-wrap tall">'
            + _table(
                ["method", "lr", "n", f"Δ {data['measured']} [95% CI]", "p", "verdict", "power", "method",
                 "baseline", "diverged"],
                drows,
                numeric=(1, 2, 3, 4, 7, 8, 9),
            )
            + "</div></details>"
        )
    return "".join(out)


def _verdict(verdict: str) -> str:
    cls = {"better": "better", "worse": "worse"}.get(verdict, "unresolved")
    return f'<span class="verdict {cls}">{escape(verdict)}</span>'


def _evidence_rules(data: Mapping[str, Any]) -> str:
    rules = data["statistics"]
    return (
        f'<p class="rule">Verdict: {escape(rules["verdict"])}.</p>'
        f'<p class="rule">Power: {escape(rules["power"])}.</p>'
    )


def _confirm(data: Mapping[str, Any], plots: Mapping[str, Plot]) -> str:
    section = data["confirm"]
    if not section["configs"]:
        return ""
    rows = []
    for c in section["configs"]:
        cmp = c["comparison"] or {}
        rows.append(
            [escape(c["label"]), str(c["n"]), interval_text(c["mean"], c["low"], c["high"]),
             interval_text(cmp.get("mean"), cmp.get("low"), cmp.get("high"), signed=True) if cmp else "reference",
             escape(p_text(cmp.get("p"))) if cmp else "", _verdict(cmp["verdict"]) if cmp else "",
             escape(power_text(cmp)) if cmp else ""]
        )  # fmt: skip
    best = section.get("best")
    best_line = (
        f"<p>Best confirmed configuration: <b>{escape(best['label'])}</b>, "
        f"{interval_text(best['mean'], best['low'], best['high'])} over {best['n']} seeds.</p>"
        if best
        else ""
    )
    return (
        '<h2 id="confirm">Confirmed on fresh seeds</h2>'
        f'<p class="rule">Selection: {escape(section["selection_rule"])}.</p>'
        f'<p class="rule">Measurement: {escape(section["rule"])}.</p>'
        + _evidence_rules(data)
        + best_line
        + _figure(plots.get("confirm"))
        + '<div class="table-wrap">'
        + _table(
            ["configuration", "n", f"{data['measured']} [95% CI]", "Δ vs baseline [95% CI]", "p", "verdict", "power"],
            rows,
            numeric=(1, 2, 3, 4),
        )
        + "</div>"
    )


def _downstream(data: Mapping[str, Any]) -> str:
    section = data.get("downstream") or {}
    tasks, rows = section.get("tasks") or [], section.get("rows") or []
    if not rows:
        return ""

    def cell(score: Mapping[str, Any] | None) -> str:
        return "–" if score is None else f"{score['acc']:.3f} ± {fmt(score['acc_se'])} (n={score['n']})"

    table = _table(
        ["trial", "method", "lr", "seed", "best val CE", *tasks, "evaluation"],
        [
            [f"<code>{escape(str(r['trial_id']))}</code>", escape(method_name(r["method"])), fmt_lr(r["lr"]),
             str(r["seed"]), fmt(r["best_val_loss"]), *(cell(r["scores"].get(task)) for task in tasks),
             escape(str(r["eval_error"] or r["eval_status"]))]
            for r in rows
        ],
    )  # fmt: skip
    out = [
        '<h2 id="downstream">Downstream accuracy</h2>',
        "<p>Zero-shot accuracy ± its standard error per task (lm-evaluation-harness).</p>",
        f'<div class="table-wrap">{table}</div>',
    ]
    paired = section.get("paired") or []
    if paired:
        out.append(f'<p class="rule">Paired against the baseline: {escape(str(section.get("rule")))}.</p>')
        prows = [
            [escape(p["task"]), escape(method_name(p["method"])), str(p["n"]),
             interval_text(p["mean"], p.get("low"), p.get("high"), digits=3, signed=True), escape(p_text(p.get("p"))),
             _verdict(p.get("verdict", ""))]
            for p in paired
        ]  # fmt: skip
        out.append(
            '<div class="table-wrap">'
            + _table(["task", "method", "n", "accuracy gain [95% CI]", "p", "verdict"], prows, numeric=(2, 3, 4))
            + "</div>"
        )
    return "".join(out)


def _lambda(data: Mapping[str, Any], plots: Mapping[str, Plot]) -> str:
    section = data["lambda_robustness"]
    out = ['<h2 id="lambda">λ robustness</h2>']
    figs = [_figure(plots.get(f"{kind}-{method}")) for method in section["heatmaps"] for kind in ("heat", "lambda")]
    figs = [f for f in figs if f]
    if not figs:
        penalties = [t.label for t in TERMS.values() if t.kind == "penalty" and t.flat_coefficients()]
        names = ", ".join(penalties[:-1]) + (" or " if len(penalties) > 1 else "") + penalties[-1]
        out.append(
            f'<p class="muted">No coefficient was swept over more than one value for {escape(names)}, '
            "so there is no heat map (see what is missing above).</p>"
        )
    out.extend(figs)
    rows = [r for r in section["rows"]]
    by_method: dict[str, int] = {}
    for r in rows:
        by_method[family_name(r)] = by_method.get(family_name(r), 0) + 1
    multi = [r for r in rows if by_method[family_name(r)] > 1]
    if multi:
        trows = [
            [
                escape(family_name(r)),
                escape(r["coefficient"]),
                f"{r['value']:g}",
                str(r["K"]),
                fmt(r["lrs"], 3),
                str(r["diverged"]),
                fmt_lr(r["largest_stable_lr"]) if r["largest_stable_lr"] is not None else "none",
            ]
            for r in multi
        ]
        out.append(
            '<h3>LRS per coefficient value</h3><div class="table-wrap">'
            + _table(
                ["method", "coefficient", "value", "K", "LRS", "diverged", "largest stable LR"],
                trows,
                numeric=(2, 3, 4, 5, 6),
            )
            + "</div>"
        )
    return "".join(out)


def _training(data: Mapping[str, Any], plots: Mapping[str, Plot]) -> str:
    out = ['<h2 id="training">Training curves and diagnostics</h2>']
    if not data["curves"]:
        out.append('<p class="muted">No validation reports of the best trials in metrics.parquet yet.</p>')
    out.append(_figure(plots.get("val-curves")))
    out.append(_figure(plots.get("diagnostics")))
    return "".join(out)


def _speedup(data: Mapping[str, Any], plots: Mapping[str, Plot]) -> str:
    s = data["speedup"]
    out = ['<h2 id="speedup">Convergence speed-up against baseline</h2>', f'<p class="rule">{escape(s["rule"])}.</p>']
    if s.get("baseline") is None:
        out.append('<p class="muted">Not available (see what is missing above).</p>')
        return "".join(out)
    b = s["baseline"]
    out.append(
        f"<p>Baseline trial <code>{escape(b['trial_id'])}</code> reaches its final validation CE "
        f"<b>{fmt(b['target_val_loss'])}</b> after {fmt_tokens(b['tokens'])} tokens.</p>"
    )
    out.append(_figure(plots.get("speedup")))
    rows = [
        [
            escape(method_name(m["method"])),
            f"<code>{escape(m['trial_id'])}</code>",
            fmt_tokens(m["tokens"]) if m["reached"] else "not reached",
            (f"{m['speedup']:.2f}x" if m["speedup"] is not None else "–")
            + (f" (&lt; {m['speedup_upper_bound']:.2f}x)" if m.get("speedup_upper_bound") else ""),
            escape(seed_speedup_text(m)),
        ]
        for m in s["methods"]
    ]
    if rows:
        headers = ["method", "best trial", "tokens to baseline's final CE", "speed-up", "over seeds"]
        out.append('<div class="table-wrap">' + _table(headers, rows, numeric=(2, 3)) + "</div>")
        if any(len(m.get("per_seed") or []) >= 2 for m in s["methods"]):
            out.append(f'<p class="rule">Over seeds: {escape(s["seed_rule"])}.</p>')
    targets = speedup_targets_rows(s)
    if targets:
        out.append(
            "<h3>Speed-up at several targets</h3>"
            f'<p class="rule">{escape(s["targets_rule"])}.</p><div class="table-wrap">'
            + _table(
                ["method", "target (baseline's CE at % of budget)", "seed pairs", "speed-up [95% CI]"],
                [[escape(c) for c in row] for row in targets],
                numeric=(2, 3),
            )
            + "</div>"
        )
    return "".join(out)


def _trials(data: Mapping[str, Any]) -> str:
    out = ['<h2 id="trials">Trials</h2>']
    links = data.get("links") or {}
    if links:
        items = " · ".join(
            f'<a href="{escape(url, quote=True)}" download>{escape(label)}</a>' for label, url in links.items()
        )
        out.append(f"<p>Downloads: {items}</p>")
    trials = data["trials"]
    if not trials:
        out.append('<p class="muted">No trials yet.</p>')
        return "".join(out)
    best_id = (data["best"].get("overall") or {}).get("trial_id")
    rows, classes = [], []
    for t in trials:
        rows.append(
            [
                f"<code>{escape(str(t['trial_id']))}</code>",
                escape(method_name(t["method"])),
                fmt_lr(t["lr"]),
                escape(coefficients_text(t["coefficients"])),
                str(t["seed"]),
                escape(str(t["status"])),
                fmt(t["final_val_loss"]),
                fmt(t["best_val_loss"]),
                test_ce_text(t),
                str(t["best_step"]) if t["best_step"] is not None else "–",
                str(t["steps"]) if t["steps"] is not None else "–",
                fmt_tokens(t["tokens"]),
                duration(t["wall_time_s"]),
                escape(stop_text(t)),
            ]
        )
        diverged = t["status"] == TrialStatus.DIVERGED
        classes.append("best" if t["trial_id"] == best_id else "diverged" if diverged else "")
    out.append(
        '<div class="table-wrap tall">'
        + _table(
            TRIAL_HEADERS,
            rows,
            numeric=(2, 4, 6, 7, 8, 9, 10, 11),
            classes=classes,
        )
        + "</div>"
    )
    return "".join(out)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lossweep")
    except PackageNotFoundError:
        return ""


def to_html(report: Report) -> str:
    data = report.data
    plots = {p.name: p for p in report.plots}
    body = "".join(
        [
            _header(data),
            _missing(data["missing"]),
            _confirm(data, plots),
            _best(data),
            _sizes(data, plots),
            _lrs(data, plots),
            _lambda(data, plots),
            _training(data, plots),
            _speedup(data, plots),
            importance_html(data, plots),
            mechanism_html(data, plots),
            _downstream(data),
            _trials(data),
            f"<footer>Generated by lossweep {escape(_version())}"
            + (f" from <code>{escape(data['sweep']['dir'])}</code>. " if data["sweep"].get("dir") else ". ")
            + f"Method references: {escape(paper_reference.OEC_CITATION)}; "
            f"{escape(paper_reference.SIMREG_CITATION)}.</footer>",
        ]
    )
    title = f"{data['sweep']['name']} · lossweep report"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
