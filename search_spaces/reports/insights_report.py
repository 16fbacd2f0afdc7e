"""The report's figures and HTML sections for :mod:`search_spaces.reports.insights`: hyperparameter importance and
the mechanism against the learning rate."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from html import escape
from typing import Any

from matplotlib import rc_context
from matplotlib.figure import Figure

from search_spaces.reports import plots
from search_spaces.reports.insights import mechanism_methods
from search_spaces.reports.plots import DIVERGED_MARK, Plot, method_color
from search_spaces.reports.report_text import md_table


def importance_plot(section: Mapping[str, Any]) -> Plot | None:
    """Horizontal bars: each hyperparameter's share of the objective's variance, over all trials."""
    ranked = section["overall"]
    if not ranked:
        return None

    def draw() -> Figure:
        with rc_context(plots._RC):
            fig = plots._figure(width=6.4, height=max(2.6, 0.8 + 0.42 * len(ranked)))
            ax = fig.add_subplot()
            names = [r["param"] for r in ranked][::-1]
            values = [r["importance"] for r in ranked][::-1]
            ax.barh(names, values, color="#2f5fd0")
            for y, v in enumerate(values):
                ax.text(v, y, f" {v:.2f}", va="center", fontsize=9)
            ax.set_xlim(0, max(1.0, max(values) * 1.15))
            ax.set_xlabel("importance (normalised, sums to 1)")
            ax.set_title("Hyperparameter importance for validation CE")
        return fig

    alt = "Bar chart of hyperparameter importance: " + ", ".join(f"{r['param']} {r['importance']:.2f}" for r in ranked)
    caption = (
        f"Optuna's {section['evaluator']} on {section['n_trials']} finished trials; objective: {section['objective']}. "
        "Only hyperparameters every finished trial has are compared here; per-method importances are in the table."
    )
    return Plot("importance", caption, alt, lambda: plots._render(draw(), "importance", alt))


def mechanism_plot(section: Mapping[str, Any]) -> Plot | None:
    """Four scatter panels against peak LR (log axis): final ‖μ‖, mean logit, max |logit|, mean log Z of every
    run, one colour per method, a line through each method's median per LR, diverged runs marked."""
    rows = section["rows"]
    panels = [(k, t) for k, t in section["metrics"].items() if any(r.get(k) is not None for r in rows)]
    if not panels:
        return None
    methods = mechanism_methods(section)

    def draw() -> Figure:
        with rc_context(plots._RC):
            fig = plots._figure(width=7.6, height=5.4)
            axes = fig.subplots(2, 2, sharex=True).ravel()
            for ax, (key, title) in zip(axes, panels, strict=False):
                for index, method in enumerate(methods):
                    mine = [r for r in rows if r["method"] == method and r.get(key) is not None]
                    if not mine:
                        continue
                    color = method_color(method, index=index)
                    ok = [r for r in mine if not r["diverged"]]
                    bad = [r for r in mine if r["diverged"]]
                    ax.scatter([r["lr"] for r in ok], [r[key] for r in ok], s=16, color=color, label=method, zorder=3)
                    if bad:
                        ax.scatter([r["lr"] for r in bad], [r[key] for r in bad], s=36, color=color,
                                   marker=DIVERGED_MARK, zorder=4)
                    medians = _medians(ok, key)
                    if len(medians) >= 2:
                        ax.plot(*zip(*medians, strict=True), color=color, lw=1.2, alpha=0.8, zorder=2)
                ax.set_xscale("log")
                ax.set_title(title)
            plots.finish_panel_grid(fig, axes, len(panels), "peak learning rate")
        return fig

    alt = (
        f"Four scatter charts against peak learning rate for {len(rows)} runs of {len(methods)} methods: final norm "
        "of the mean output embedding, mean logit, maximum absolute logit and mean log partition function."
    )
    caption = (
        "The mechanism against the learning rate: each dot is one run's last report (a diverged run's last finite "
        f"one, marked {DIVERGED_MARK}); lines join each method's median per learning rate. Without a fix ‖μ‖ and the "
        "mean logit grow with the learning rate; μ-centering holds ‖μ‖ at 0, μ-loss small; z-loss pins log Z."
    )
    return Plot("mechanism-lr", caption, alt, lambda: plots._render(draw(), "mechanism-lr", alt))


def _medians(rows: list[Mapping[str, Any]], key: str) -> list[tuple[float, float]]:
    by_lr: dict[float, list[float]] = {}
    for r in rows:
        by_lr.setdefault(r["lr"], []).append(r[key])
    return [(lr, statistics.median(by_lr[lr])) for lr in sorted(by_lr)]


def figures(data: Mapping[str, Any]) -> list[Plot]:
    return [p for p in (importance_plot(data["importance"]), mechanism_plot(data["mechanism"])) if p is not None]


def _figure_html(plot: Plot | None) -> str:
    if plot is None:
        return ""
    return f'<figure id="fig-{plot.name}">{plot.svg}<figcaption>{escape(plot.caption)}</figcaption></figure>'


def importance_html(data: Mapping[str, Any], figs: Mapping[str, Plot]) -> str:
    section = data["importance"]
    out = [
        '<h2 id="importance">Hyperparameter importance</h2>',
        f'<p class="rule">Objective: {escape(section["objective"])}; evaluator: Optuna\'s '
        f"{escape(section['evaluator'])}.</p>",
    ]
    if not section["overall"] and not section["per_method"]:
        out.append('<p class="muted">' + escape("; ".join(section["missing"]) or "Not available.") + "</p>")
        return "".join(out)
    out.append(_figure_html(figs.get("importance")))
    if section["per_method"]:
        rows = "".join(
            f"<tr><td>{escape(method)}</td><td class=num>{entry['n_trials']}</td><td>"
            + escape(", ".join(f"{r['param']} {r['importance']:.2f}" for r in entry["importances"]))
            + "</td></tr>"
            for method, entry in section["per_method"].items()
        )
        out.append(
            "<h3>Within each method</h3><div class=\"table-wrap\"><table><thead><tr><th scope=col>method</th>"
            "<th class=num scope=col>trials</th><th scope=col>importance</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )
    return "".join(out)


def mechanism_html(data: Mapping[str, Any], figs: Mapping[str, Plot]) -> str:
    section = data["mechanism"]
    out = ['<h2 id="mechanism">The mechanism against the learning rate</h2>']
    plot = figs.get("mechanism-lr")
    if plot is None:
        out.append('<p class="muted">' + escape("; ".join(section["missing"]) or "Not available.") + "</p>")
        return "".join(out)
    out.append(_figure_html(plot))
    return "".join(out)


def markdown(data: Mapping[str, Any]) -> list[str]:
    """Both sections as Markdown lines: the importances, and the mechanism as medians per method and LR."""
    imp = data["importance"]
    rule = f"Objective: {imp['objective']}; evaluator: Optuna's {imp['evaluator']}."
    out = ["## Hyperparameter importance", "", rule, ""]
    if imp["overall"]:
        ranked = [[r["param"], f"{r['importance']:.3f}"] for r in imp["overall"]]
        out += md_table(["hyperparameter", "importance"], ranked)
    for method, entry in imp["per_method"].items():
        ranked = ", ".join(f"{r['param']} {r['importance']:.2f}" for r in entry["importances"])
        out.append(f"- within {method} ({entry['n_trials']} trials): {ranked}")
    out += [f"- {line}" for line in imp["missing"]] + [""]

    mech = data["mechanism"]
    out += ["## The mechanism against the learning rate", ""]
    if not mech["rows"]:
        out += [f"- {line}" for line in mech["missing"]] + [""]
        return out
    keys = list(mech["metrics"])
    rows = []
    for method in mechanism_methods(mech):
        mine = [r for r in mech["rows"] if r["method"] == method]
        for lr in sorted({r["lr"] for r in mine}):
            at = [r for r in mine if r["lr"] == lr]
            values = [[r[k] for r in at if r.get(k) is not None] for k in keys]
            cells = [f"{statistics.median(vs):.4g}" if vs else "–" for vs in values]
            rows.append([method, f"{lr:g}", str(len(at)), str(sum(r["diverged"] for r in at)), *cells])
    out += ["Median over runs of each run's last finite report, per method and peak learning rate.", ""]
    titles = [t.replace("|", "\\|") for t in mech["metrics"].values()]  # "max |logit|" inside a table header
    return out + md_table(["method", "lr", "runs", "diverged", *titles], rows)
