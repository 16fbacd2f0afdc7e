"""``report.md``: the same content as the HTML page as text tables (figures live in report.html)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from search_spaces.analysis import paper_reference, trial_frame
from search_spaces.reports import insights_report
from search_spaces.reports.report import Report
from search_spaces.reports.report_text import (
    SIZE_CURVES_CAPTION,
    SIZE_HEADERS,
    TRIAL_HEADERS,
    coefficients_text,
    duration,
    family_name,
    fenced,
    fmt,
    fmt_lr,
    fmt_tokens,
    interval_text,
    md_table,
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


def _header(data: Mapping[str, Any]) -> list[str]:
    s = data["sweep"]
    counts = ", ".join(f"{k.lower()} {v}" for k, v in s["counts"].items() if v)
    out = [
        f"# {s['name']} — {s['status']}{' (partial)' if s['partial'] else ''}",
        "",
        f"Sweep `{s['id']}` · {status_line(data)}" + (f" · updated {s['updated_at']}" if s.get("updated_at") else ""),
        "",
        f"- trials per status: {counts or 'none'}",
        f"- tokens trained: {fmt_tokens(s['tokens'])}; sweep wall time {duration(s.get('elapsed_s'))}; "
        f"trial time (sum) {duration(s.get('trial_wall_time_s'))}"
        + (f"; estimated time left {duration(s.get('eta_s'))}" if s["partial"] and s.get("eta_s") is not None else ""),
        f"- vocabulary: {s.get('vocab_size') or '–'} (L0 = ln V = {fmt(s.get('l0'), 3)})",
        f"- resources per trial: {resources_text(s.get('resources'))}",
        "",
    ]
    if s.get("spec"):
        out += [
            "<details><summary>Sweep spec</summary>",
            "",
            *fenced(yaml.safe_dump(s["spec"], sort_keys=False), "yaml"),
            "",
            "</details>",
            "",
        ]
    if s.get("manifest"):
        out += [
            "<details><summary>Manifest</summary>",
            "",
            *fenced(json.dumps(s["manifest"], indent=2, ensure_ascii=False), "json"),
            "",
            "</details>",
            "",
        ]
    if data["missing"]:
        out += ["> **What is missing**", ">"] + [f"> - {m}" for m in data["missing"]] + [""]
    out += ["Figures are in `report.html` beside this file.", ""]
    return out


def _best(data: Mapping[str, Any]) -> list[str]:
    best = data["best"]
    out = ["## Best configuration", "", f"Rule: {best['rule']}.", ""]
    if best.get("overall") is None:
        return [*out, "No best configuration yet.", ""]
    records = [("overall", best["overall"]), *list(best["per_method"].items())]
    out += md_table(
        ["", "method", "val CE", "step", "lr", "coefficients", "seed", "status", "trial"],
        [
            [
                name if name == "overall" else method_name(name),
                method_name(r["method"]),
                fmt(r["val_loss"]),
                r["step"],
                fmt_lr(r["params"].get("lr")),
                coefficients_text(r["params"]),
                r["seed"],
                r["status"],
                f"`{r['trial_id']}`",
            ]
            for name, r in records
        ],
    )
    out += ["Best overall, to copy:", "", *fenced(best["overall"]["yaml"], "yaml"), ""]
    return out


def _sizes(data: Mapping[str, Any]) -> list[str]:
    section = data.get("sizes")
    if not section:
        return []
    out = ["## Across model sizes", "", f"{section['rule']}. {section['paper_note']}.", ""]
    out += md_table(list(SIZE_HEADERS), size_rows(section))
    headers, rows = size_curve_table(section)
    return [*out, SIZE_CURVES_CAPTION, "", *md_table(headers, rows)]


def _lrs(data: Mapping[str, Any]) -> list[str]:
    section = data["lr_sensitivity"]
    out = ["## Learning-rate sensitivity", "", f"{section['rule']}.", ""]
    families = section["families"]
    if not families:
        return [*out, "No finished trials yet.", ""]
    out += md_table(
        ["method", "coefficients", "K", "LRS [95% CI]", "seeds", "diverged", "largest stable LR", "note"],
        [
            [
                family_name(f),
                trial_frame.format_coefficients(f["coefficients"]),
                f["K"],
                interval_text(f["lrs"], f["lrs_low"], f["lrs_high"], 3),
                f["n_seeds"],
                f["diverged"],
                fmt_lr(f["largest_stable_lr"]) if f["largest_stable_lr"] is not None else "none",
                f["note"],
            ]
            for f in families
            if f["K"] >= 2 or f["lrs"] is not None
        ],
    )
    out += [*single_lr_summary(families), ""] if single_lr_summary(families) else []
    out += [f"Largest stable LR: {section['stable_rule']}.", ""]
    paper = section.get("paper")
    if paper and paper.get("rows"):
        sizes = list(paper_reference.PAPER_LRS)
        out += [
            "### Beside the paper",
            "",
            f"The sweep used the paper's LR grid, so its published LRS are shown beside ours. "
            f"Source: {paper['citation']}. {paper['note']}.",
            "",
        ]
        out += md_table(
            ["method", "this sweep", *[f"paper {s}" for s in sizes], "paper 221M tied"],
            [
                [method_name(r["method"]), fmt(r["ours"], 3)]
                + [fmt(r["paper"].get(s), 3) for s in sizes]
                + [fmt(r["paper_tied_221M"], 3)]
                for r in paper["rows"]
            ],
        )
    out += [f"LRS interval: {data['statistics']['lrs_interval']}.", ""]
    diffs = data.get("lrs_differences") or []
    if diffs:
        out += ["### LRS against baseline", ""]
        out += md_table(
            ["method", "K", "seed pairs", "LRS", "baseline LRS", "ΔLRS [95% CI]", "verdict"],
            [
                [d["label"], d["K"], d["n_pairs"], fmt(d["lrs"], 3), fmt(d["baseline_lrs"], 3),
                 interval_text(d["lrs_delta"], d["lrs_delta_low"], d["lrs_delta_high"], 3, signed=True), d["verdict"]]
                for d in diffs
            ],
        )  # fmt: skip
    deltas = data["paired_deltas"]["rows"]
    if deltas:
        out += ["### Paired against baseline", "", f"{data['paired_deltas']['rule']}.", *_evidence_rules(data)]
        out += md_table(
            ["method", "lr", "n", f"Δ {data['measured']} [95% CI]", "p", "verdict", "power", "method", "baseline",
             "diverged"],
            [
                [d["label"], fmt_lr(d["lr"]), d["n_pairs"],
                 interval_text(d["delta_mean"], d["delta_low"], d["delta_high"], signed=True), p_text(d["p"]),
                 d["verdict"], power_text(d), fmt(d["method_mean"]), fmt(d["baseline_mean"]), d["diverged"]]
                for d in deltas
            ],
        )  # fmt: skip
    return out


def _evidence_rules(data: Mapping[str, Any]) -> list[str]:
    rules = data["statistics"]
    return ["", f"Verdict: {rules['verdict']}.", "", f"Power: {rules['power']}.", ""]


def _confirm(data: Mapping[str, Any]) -> list[str]:
    section = data["confirm"]
    if not section["configs"]:
        return []
    out = ["## Confirmed on fresh seeds", "", f"Selection: {section['selection_rule']}.", "",
           f"Measurement: {section['rule']}.", *_evidence_rules(data)]  # fmt: skip
    rows = []
    for c in section["configs"]:
        cmp = c["comparison"] or {}
        rows.append(
            [c["label"], c["n"], interval_text(c["mean"], c["low"], c["high"]),
             interval_text(cmp.get("mean"), cmp.get("low"), cmp.get("high"), signed=True) if cmp else "reference",
             p_text(cmp.get("p")) if cmp else "", cmp.get("verdict", ""), power_text(cmp) if cmp else ""]
        )  # fmt: skip
    out += md_table(
        ["configuration", "n", f"{data['measured']} [95% CI]", "Δ vs baseline [95% CI]", "p", "verdict", "power"], rows
    )
    best = section.get("best")
    if best:
        out += [f"Best confirmed configuration: {best['label']}, "
                f"{interval_text(best['mean'], best['low'], best['high'])} over {best['n']} seeds.", ""]  # fmt: skip
    return out


def _lambda(data: Mapping[str, Any]) -> list[str]:
    section = data["lambda_robustness"]
    out = ["## λ robustness", ""]
    for method, matrix in section["heatmaps"].items():
        out += [
            f"Final {data['measured']} of {method_name(method)}, {matrix['row']} (rows) x {matrix['col']} (columns):",
            "",
        ]
        out += md_table(
            [matrix["row"], *[f"{c:g}" for c in matrix["cols"]]],
            [
                [f"{r:g}"]
                + [
                    ("–" if v is None else fmt(v, 3)) + (f" ✕{d}" if d else "")
                    for v, d in zip(values, div, strict=True)
                ]
                for r, values, div in zip(matrix["rows"], matrix["values"], matrix["diverged"], strict=True)
            ],
        )
    if not section["heatmaps"]:
        out += ["No coefficient was swept over more than one value.", ""]
    return out


def _speedup(data: Mapping[str, Any]) -> list[str]:
    s = data["speedup"]
    out = ["## Convergence speed-up against baseline", "", f"{s['rule']}.", ""]
    if s.get("baseline") is None:
        return [*out, "Not available (see what is missing).", ""]
    b = s["baseline"]
    out += [
        f"Baseline trial `{b['trial_id']}` reaches its final validation CE {fmt(b['target_val_loss'])} after "
        f"{fmt_tokens(b['tokens'])} tokens.",
        "",
    ]
    out += md_table(
        ["method", "best trial", "tokens to baseline's final CE", "speed-up", "over seeds"],
        [
            [
                method_name(m["method"]),
                f"`{m['trial_id']}`",
                fmt_tokens(m["tokens"]) if m["reached"] else "not reached",
                (f"{m['speedup']:.2f}x" if m["speedup"] is not None else "–")
                + (f" (< {m['speedup_upper_bound']:.2f}x)" if m.get("speedup_upper_bound") else ""),
                seed_speedup_text(m),
            ]
            for m in s["methods"]
        ],
    )
    if any(len(m.get("per_seed") or []) >= 2 for m in s["methods"]):
        out += [f"Over seeds: {s['seed_rule']}.", ""]
    targets = speedup_targets_rows(s)
    if targets:
        out += ["### Speed-up at several targets", "", f"{s['targets_rule']}.", ""]
        out += md_table(["method", "target (baseline's CE at % of budget)", "seed pairs", "speed-up [95% CI]"], targets)
    return out


def _trials(data: Mapping[str, Any]) -> list[str]:
    out = ["## Trials", ""]
    links = data.get("links") or {}
    if links:
        out += ["Downloads: " + " · ".join(f"[{label}]({url})" for label, url in links.items()), ""]
    if not data["trials"]:
        return [*out, "No trials yet.", ""]
    out += md_table(
        TRIAL_HEADERS,
        [
            [
                f"`{t['trial_id']}`",
                method_name(t["method"]),
                fmt_lr(t["lr"]),
                coefficients_text(t["coefficients"]),
                t["seed"],
                t["status"],
                fmt(t["final_val_loss"]),
                fmt(t["best_val_loss"]),
                test_ce_text(t),
                t["best_step"],
                t["steps"],
                fmt_tokens(t["tokens"]),
                duration(t["wall_time_s"]),
                stop_text(t),
            ]
            for t in data["trials"]
        ],
    )
    return out


def _downstream(data: Mapping[str, Any]) -> list[str]:
    section = data.get("downstream") or {}
    tasks, rows = section.get("tasks") or [], section.get("rows") or []
    if not rows:
        return []
    out = ["## Downstream accuracy", "", "Zero-shot accuracy ± its standard error per task (lm-evaluation-harness)."]
    out.append("")

    def cell(score: Mapping[str, Any] | None) -> str:
        return "—" if score is None else f"{score['acc']:.3f} ± {fmt(score['acc_se'])} (n={score['n']})"

    out += md_table(
        ["trial", "method", "lr", "seed", "best val CE", *tasks, "evaluation"],
        [
            [f"`{r['trial_id']}`", method_name(r["method"]), fmt_lr(r["lr"]), r["seed"], fmt(r["best_val_loss"]),
             *(cell(r["scores"].get(t)) for t in tasks), r["eval_error"] or r["eval_status"]]
            for r in rows
        ],
    )  # fmt: skip
    paired = section.get("paired") or []
    if paired:
        out += ["", f"Per-seed differences against the baseline ({section.get('rule')}):", ""]
        out += md_table(
            ["task", "method", "n", "mean difference [95 % CI]", "p", "verdict", "per seed"],
            [
                [p["task"], method_name(p["method"]), p["n"],
                 interval_text(p["mean"], p.get("low"), p.get("high"), digits=3, signed=True),
                 p_text(p.get("p")), p.get("verdict", ""),
                 ", ".join(f"{d['seed']}: {d['difference']:+.3f}" for d in p["differences"])]
                for p in paired
            ],
        )  # fmt: skip
    return [*out, ""]


#: The report's analysis sections in page order, by name (the results page picks from them).
SECTIONS: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "confirm": _confirm,
    "best": _best,
    "sizes": _sizes,
    "lrs": _lrs,
    "lambda": _lambda,
    "speedup": _speedup,
    "insights": insights_report.markdown,
    "downstream": _downstream,
}


def to_markdown(report: Report) -> str:
    data = report.data
    lines = _header(data)
    for section in SECTIONS.values():
        lines += section(data)
    lines += _trials(data)
    lines += [f"_Method references: {paper_reference.OEC_CITATION}; {paper_reference.SIMREG_CITATION}._", ""]
    return "\n".join(lines)
