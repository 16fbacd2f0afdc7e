"""The report's figures: matplotlib (Agg, no pyplot state), rendered to deterministic inline SVG.

Each function takes analysis output (plain data, no sweep-dir access) and returns a :class:`Plot`
with its SVG text, a caption and alt text. Rendering the same data twice gives the same bytes: the
SVG hash salt is fixed, the date metadata is dropped and element ids are prefixed per plot so that
several SVGs inline in one HTML page never share an id.

One builder per figure of the report, sharing the style helpers above them; the module stays one
file (about 500 lines) so that every figure is drawn by the same rules in one place.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import matplotlib
import numpy as np
from matplotlib import colors as mcolors
from matplotlib import rc_context, ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trainables.losses.registry import BASELINE, TERMS

_RC = {
    "svg.hashsalt": "lossweep",
    "svg.fonttype": "path",  # glyphs as paths: the page looks the same whatever fonts the reader has
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 9,
    "path.simplify": False,
}

# One colour per method everywhere in the report (Okabe–Ito, readable with colour-vision deficiency).
# The loss registry gives each term its colour; a term that declares none (a plugin) takes the next extra one.
METHOD_COLORS: dict[str, str] = {BASELINE: "#000000", **{n: t.color for n, t in TERMS.items() if t.color}}
_EXTRA_COLORS = ("#0072B2", "#F0E442", "#999999", "#882255", "#44AA99", "#117733")
DIVERGED_MARK = "X"
_DIVERGED_COLOR = "#8b1a1a"


def method_color(method: str, *, index: int = 0) -> str:
    return METHOD_COLORS.get(method, _EXTRA_COLORS[index % len(_EXTRA_COLORS)])


# Methods often coincide (μ-centering equals baseline in fp32): dashes keep every line visible on top of
# the baseline, which is drawn wider underneath.
_METHOD_DASHES: dict[str, Any] = {BASELINE: "-", **{n: t.dash for n, t in TERMS.items() if t.dash is not None}}


def line_style(method: str, *, width: float = 1.8) -> dict[str, Any]:
    """Colour-independent style of a method's line (dash pattern, width, drawing order)."""
    base = method == "baseline"
    return {"ls": _METHOD_DASHES.get(method, "-"), "lw": width * 1.6 if base else width, "zorder": 2 if base else 3}


@dataclass(frozen=True)
class Plot:
    """One figure: ``name`` is a stable id (also the SVG id prefix). The SVG is drawn on first use, so a
    JSON or Markdown report (which only lists captions and alt text) never pays for drawing."""

    name: str
    caption: str
    alt: str
    draw: Callable[[], str] = field(repr=False, compare=False)

    @cached_property
    def svg(self) -> str:
        return self.draw()


def _render(fig: Figure, name: str, alt: str) -> str:
    buffer = io.StringIO()
    with rc_context(_RC):
        # No bbox_inches="tight": constrained layout already fits the figure, and "tight" draws it twice.
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return _inline_svg(buffer.getvalue(), name, alt)


def _inline_svg(text: str, name: str, alt: str) -> str:
    """Makes matplotlib's SVG document safe and accessible to inline in HTML."""
    text = re.sub(r"<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    # Prefix every id and every reference to one, so two inline SVGs never collide.
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{name}-{m.group(1)}"', text)
    text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{name}-{m.group(1)})", text)
    text = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{name}-{m.group(1)}"', text)
    # Responsive: keep the viewBox, let CSS size it, but never beyond its natural width (no blown-up text).
    size = re.search(r'<svg[^>]*?\swidth="([0-9.]+)pt"\sheight="([0-9.]+)pt"', text)
    if size:
        natural = float(size.group(1)) * 4 / 3
        text = re.sub(
            r'<svg([^>]*?)\swidth="[^"]*"\sheight="[^"]*"', rf'<svg\1 style="max-width:{natural:.0f}px"', text, count=1
        )
    title = _escape(alt)
    text = text.replace(
        "<svg ",
        f'<svg role="img" aria-labelledby="{name}-title" class="plot" ',
        1,
    )
    text = re.sub(r"(<svg[^>]*>)", lambda m: f'{m.group(1)}<title id="{name}-title">{title}</title>', text, count=1)
    return text.strip() + "\n"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _figure(width: float = 7.2, height: float = 4.0) -> Figure:
    with rc_context(_RC):
        fig = Figure(figsize=(width, height), dpi=96, layout="constrained")
    # An explicit Agg canvas: no pyplot, no global backend switch, safe in a threaded service.
    FigureCanvasAgg(fig)
    return fig


def _fmt_lr(value: float) -> str:
    return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e") if value < 1e-2 else f"{value:g}"


# ---------------------------------------------------------------------------------------------------
# Learning-rate sensitivity
# ---------------------------------------------------------------------------------------------------


def lr_sensitivity_plot(
    families: Sequence[Mapping[str, Any]], *, l0: float | None, measured: str = "validation CE"
) -> Plot:
    """Validation CE against peak LR (log axis), one line per family; diverged runs marked.

    ``families`` are rows of :func:`search_spaces.analysis.sensitivity.lr_sensitivity` with ``lrs_grid``,
    ``losses`` and ``diverged_lrs`` (the learning rates with at least one diverged trial). When
    ``ln V`` lies far above every non-diverged loss, the y axis stops short of it and diverged
    points sit on the top edge (their value, ln V, is in the caption), so the curves stay readable.
    """
    finite = [
        y
        for fam in families
        for x, y in zip(fam["lrs_grid"], fam["losses"], strict=True)
        if x not in set(fam.get("diverged_lrs", ()))
    ] + [y for fam in families for _, y, div in fam.get("points", ()) if not div]
    any_diverged = any(fam.get("diverged_lrs") for fam in families) or any(
        div for fam in families for _, _, div in fam.get("points", ())
    )
    top: float | None = None
    bottom: float | None = None
    if finite and l0 is not None and any_diverged:
        lo, hi = min(finite), max(finite)
        span = max(hi - lo, 0.05)
        if l0 > hi + 0.6 * span:
            top, bottom = hi + 0.35 * span, lo - 0.08 * span

    def draw() -> Figure:
        with rc_context(_RC):
            fig = _figure(width=8.2, height=4.8)
            ax = fig.add_subplot()
            drawn = 0
            for index, fam in enumerate(families):
                xs, ys = list(fam["lrs_grid"]), list(fam["losses"])
                if fam.get("points"):
                    _searched(ax, fam, method_color(fam["method"], index=index), top)
                    drawn += 1
                    continue
                if not xs:
                    continue
                color = method_color(fam["method"], index=index)
                lrs = fam.get("lrs")
                label = fam["label"] + (f" · LRS {lrs:.3f}" if lrs is not None else "")
                ax.plot(xs, ys, marker="o", ms=4.5, color=color, label=label, **line_style(fam["method"]))
                _seed_spread(ax, fam.get("cells") or [], color, top)
                diverged = set(fam.get("diverged_lrs", ()))
                div = [(x, y if top is None else top) for x, y in zip(xs, ys, strict=True) if x in diverged]
                _diverged_marks(ax, div, color, size=110)
                drawn += 1
            if l0 is not None and top is None and (any_diverged or not finite):
                ax.axhline(l0, color="#b22222", lw=1.0, ls="--")
                ax.annotate(
                    f"L0 = ln V = {l0:.2f}",
                    xy=(0.01, l0),
                    xycoords=("axes fraction", "data"),
                    xytext=(0, -11),
                    textcoords="offset points",
                    fontsize=8,
                    color="#b22222",
                )
            if top is not None:
                ax.set_ylim(bottom, top)
                ax.annotate(
                    f"✕ diverged (counted as ln V = {l0:.2f}, off this scale)",
                    xy=(0.99, 1.0),
                    xycoords="axes fraction",
                    xytext=(0, 6),
                    textcoords="offset points",
                    ha="right",
                    fontsize=8,
                    color="#b22222",
                )
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 3.0)))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _p: _fmt_lr(v)))
            ax.xaxis.set_minor_locator(ticker.NullLocator())
            ax.set_xlabel("peak learning rate (log scale)")
            ax.set_ylabel(f"final {measured} (nats)")
            ax.set_title("Learning-rate sensitivity", loc="left")
            if drawn:
                fig.legend(loc="outside lower center", ncols=2 if drawn > 3 else drawn)
        return fig

    plotted = sum(1 for fam in families if fam["lrs_grid"] or fam.get("points"))
    alt = (
        f"Line chart of the final {measured} against peak learning rate on a log axis, one line per "
        f"method ({plotted} lines); crosses mark learning rates where a run diverged."
    )
    caption = (
        "Final loss (no penalty terms) against the peak learning rate: the line is the mean over seeds, each dot "
        "one seed, the shaded band the 95% t-interval of the mean (two or more seeds). Flat is robust: LRS in the "
        "legend is the mean excess over each method's best LR. ✕ = diverged, counted as the loss of a uniform "
        "predictor, ln V."
    )
    return Plot("lr-sensitivity", caption, alt, lambda: _render(draw(), "lr-sensitivity", alt))


def _seed_spread(ax: Any, cells: Sequence[Mapping[str, Any]], color: str, top: float | None) -> None:
    """Every seed of each learning-rate cell as a dot and the cell's 95% t-interval as a band."""
    band = [(c["lr"], c["low"], c["high"]) for c in cells if c.get("low") is not None and c.get("high") is not None]
    if len(band) >= 2:
        xs, lows, highs = zip(*band, strict=True)
        clip = (lambda v: min(v, top)) if top is not None else (lambda v: v)
        ax.fill_between(xs, [clip(v) for v in lows], [clip(v) for v in highs], color=color, alpha=0.15, lw=0)
    for c in cells:
        values = [v if top is None else min(v, top) for v in (c.get("seeds") or {}).values()]
        if len(values) >= 2:
            ax.scatter([c["lr"]] * len(values), values, s=10, color=color, alpha=0.55, zorder=3, linewidths=0)


def confirm_plot(configs: Sequence[Mapping[str, Any]]) -> Plot:
    """The confirm stage: one row per confirmed configuration, every seed a dot, the mean and its 95%
    t-interval a bar (rows of :func:`search_spaces.analysis.confirm.confirm_comparison`)."""

    def draw() -> Figure:
        with rc_context(_RC):
            fig = _figure(width=8.2, height=1.2 + 0.45 * len(configs))
            ax = fig.add_subplot()
            for row, c in enumerate(configs):
                color = method_color(c["method"], index=row)
                seeds = list((c.get("seeds") or {}).values())
                ax.scatter(seeds, [row] * len(seeds), s=18, color=color, alpha=0.6, zorder=3, linewidths=0)
                if c.get("low") is not None and c.get("high") is not None:
                    ax.errorbar(c["mean"], row, xerr=[[c["mean"] - c["low"]], [c["high"] - c["mean"]]], fmt="|",
                                color=color, capsize=4, lw=2, ms=12)  # fmt: skip
                elif c.get("mean") is not None:
                    ax.plot([c["mean"]], [row], marker="|", ms=12, color=color)
            ax.set_yticks(range(len(configs)), [c["label"] for c in configs])
            ax.invert_yaxis()
            ax.set_xlabel("final loss on the confirm seeds (nats)")
            ax.set_title("Confirmed on fresh seeds", loc="left")
        return fig

    alt = (
        f"Dot plot of {len(configs)} confirmed configurations: each seed's final loss as a dot, the mean and its "
        "95% confidence interval as a bar."
    )
    caption = (
        "The best configuration of every method re-trained on seeds the search never used: each dot one seed, the "
        "bar the mean and its 95% t-interval. Overlapping bars are not a test: the paired verdicts are in the table."
    )
    return Plot("confirm", caption, alt, lambda: _render(draw(), "confirm", alt))


def _searched(ax: Any, fam: Mapping[str, Any], color: str, top: float | None) -> None:
    """Trials of a searched method (one LR per configuration): points, no line."""
    ok = [(x, y) for x, y, div in fam["points"] if not div]
    div = [(x, y if top is None else top) for x, y, d in fam["points"] if d]
    ax.scatter([x for x, _ in ok], [y for _, y in ok], s=22, color=color, alpha=0.75, label=fam["label"])
    _diverged_marks(ax, div, color, size=90)


def _diverged_marks(ax: Any, points: Sequence[tuple[float, float]], color: str, *, size: float) -> None:
    """Crosses at the learning rates where runs diverged, above the lines and not clipped at the top edge
    (where a cut-off y-axis puts them)."""
    if not points:
        return
    ax.scatter(
        [x for x, _ in points],
        [y for _, y in points],
        marker=DIVERGED_MARK,
        s=size,
        color=color,
        edgecolors="white",
        linewidths=0.8,
        zorder=5,
        clip_on=False,
    )


# ---------------------------------------------------------------------------------------------------
# Heat maps (coefficient x LR, weight x temperature)
# ---------------------------------------------------------------------------------------------------


def heatmap_plot(
    name: str,
    matrix: Mapping[str, Any],
    *,
    title: str,
    row_label: str,
    col_label: str,
    caption: str,
    l0: float | None,
) -> Plot:
    """Final measured loss on a grid; lower is better (lighter). Cells holding diverged runs are drawn in
    the colour map's "over" colour (dark red) so that ``ln V`` does not wash out the scale of the rest."""
    rows, cols, values = matrix["rows"], matrix["cols"], matrix["values"]
    diverged, counts = matrix["diverged"], matrix["counts"]
    cells = [(v, d) for line, div in zip(values, diverged, strict=True) for v, d in zip(line, div, strict=True)]
    stable = [v for v, d in cells if v is not None and not d]
    any_diverged = any(d for _, d in cells)
    vmin = min(stable) if stable else 0.0
    vmax = max(stable) if stable else 1.0
    if vmax <= vmin:
        vmax = vmin + 1e-6
    over = vmax + abs(vmax) + 1.0  # any value above vmax takes the "over" colour; inf would be masked
    data = [
        [math.nan if v is None else (over if d else v) for v, d in zip(line, div, strict=True)]
        for line, div in zip(values, diverged, strict=True)
    ]

    def draw() -> Figure:
        with rc_context(_RC):
            fig = _figure(width=max(4.8, 1.0 + 0.95 * len(cols)), height=max(2.8, 1.2 + 0.55 * len(rows)))
            ax = fig.add_subplot()
            ax.grid(False)
            cmap = matplotlib.colormaps["viridis_r"].with_extremes(bad="#eeeeee", over=_DIVERGED_COLOR)
            # pcolormesh, not imshow: vector cells (crisp at any zoom, no embedded PNG in the SVG).
            image = ax.pcolormesh(
                [x - 0.5 for x in range(len(cols) + 1)],
                [y - 0.5 for y in range(len(rows) + 1)],
                np.ma.masked_where(np.isnan(np.asarray(data, dtype=float)), np.asarray(data, dtype=float)),
                cmap=cmap,
                norm=mcolors.Normalize(vmin=vmin, vmax=vmax),
                edgecolors="white",
                linewidth=1.0,
            )
            ax.set_ylim(len(rows) - 0.5, -0.5)  # first row on top, as in a table
            for i in range(len(rows)):
                for j in range(len(cols)):
                    v = values[i][j]
                    if v is None:
                        text = "–"
                        color = "#555555"
                    elif diverged[i][j]:
                        text = f"{v:.3f}\n✕ {diverged[i][j]}/{counts[i][j]} div."
                        color = "white"
                    else:
                        text = f"{v:.3f}"
                        shade = (v - vmin) / (vmax - vmin)
                        color = "white" if shade > 0.55 else "black"
                    ax.text(j, i, text, ha="center", va="center", fontsize=7.5, color=color)
            ax.set_xticks(range(len(cols)), [_fmt_lr(c) if col_label.startswith("peak") else f"{c:g}" for c in cols])
            ax.set_yticks(range(len(rows)), [f"{r:g}" for r in rows])
            ax.set_xlabel(col_label)
            ax.set_ylabel(row_label)
            ax.set_title(title)
            ax.spines[:].set_visible(False)
            bar = fig.colorbar(image, ax=ax, shrink=0.9, extend="max" if any_diverged else "neither")
            bar.set_label("final val CE" + (" (dark red: diverged)" if any_diverged else ""))
        return fig

    alt = (
        f"Heat map of final validation cross entropy, {row_label} ({len(rows)} values) by {col_label} "
        f"({len(cols)} values); lighter cells are lower loss, dark red cells held diverged runs"
        + (f" (counted as ln V = {l0:.2f})." if l0 else ".")
    )
    return Plot(name, caption, alt, lambda: _render(draw(), name, alt))


def lambda_plot(name: str, families: Sequence[Mapping[str, Any]], *, column: str, title: str, l0: float | None) -> Plot:
    """λ robustness with its spread: final loss against the coefficient (log axis), one line per learning
    rate joining the seed means, every seed a dot and the 95% t-interval of the mean an error bar.

    ``families`` are LR-sensitivity rows of one method, each with one value of ``column`` and its
    per-learning-rate ``cells`` (``lr``, ``mean``, ``low``, ``high``, ``seeds``, ``diverged``).
    """
    by_lr: dict[float, list[tuple[float, Mapping[str, Any]]]] = {}
    for fam in families:
        lam = (fam.get("coefficients") or {}).get(column)
        if lam is None or lam <= 0:
            continue
        for cell in fam.get("cells") or []:
            by_lr.setdefault(float(cell["lr"]), []).append((float(lam), cell))
    palette = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")

    def draw() -> Figure:
        with rc_context(_RC):
            fig = _figure(width=7.2, height=4.4)
            ax = fig.add_subplot()
            for index, lr in enumerate(sorted(by_lr)):
                color = palette[index % len(palette)]
                points = sorted(by_lr[lr], key=lambda p: p[0])
                xs = [x for x, _ in points]
                means = [c["mean"] for _, c in points]
                ax.plot(xs, means, marker="o", ms=4.5, color=color, lw=1.6, label=f"lr {_fmt_lr(lr)}")
                for x, c in points:
                    if c.get("low") is not None and c.get("high") is not None:
                        ax.errorbar([x], [c["mean"]], yerr=[[c["mean"] - c["low"]], [c["high"] - c["mean"]]],
                                    color=color, capsize=3, lw=1.0)  # fmt: skip
                    seeds = list((c.get("seeds") or {}).values())
                    if len(seeds) >= 2:
                        ax.scatter([x] * len(seeds), seeds, s=10, color=color, alpha=0.55, zorder=3, linewidths=0)
                div = [(x, c["mean"]) for x, c in points if c.get("diverged")]
                _diverged_marks(ax, div, color, size=90)
            if l0 is not None:
                ax.axhline(l0, color="#b22222", lw=1.0, ls="--")
            ax.set_xscale("log")
            ax.set_xlabel(f"{column} (log scale)")
            ax.set_ylabel("final loss (nats)")
            ax.set_title(title, loc="left")
            if by_lr:
                fig.legend(loc="outside lower center", ncols=min(len(by_lr), 4))
        return fig

    alt = (
        f"Line chart of final loss against {column} on a log axis, one line per learning rate ({len(by_lr)} lines), "
        "with every seed as a dot and a 95% interval bar at each point."
    )
    caption = (
        f"Final loss against {column}, one line per peak learning rate: the line joins the means over seeds, each "
        "dot is one seed, the bar the 95% t-interval of the mean (two or more seeds); ✕ = a diverged run in the "
        "cell, counted as ln V (the dashed line). A robust coefficient keeps every line low and flat."
    )
    return Plot(name, caption, alt, lambda: _render(draw(), name, alt))


def scatter_plot(
    name: str,
    points: Sequence[Mapping[str, Any]],
    *,
    x: str,
    y: str,
    title: str,
    caption: str,
) -> Plot:
    """Searched (non-grid) coefficients: each finished trial a dot on log axes, coloured by its loss."""

    def draw() -> Figure:
        with rc_context(_RC):
            fig = _figure(width=6.0, height=4.0)
            ax = fig.add_subplot()
            ok = [p for p in points if not p["diverged"]]
            div = [p for p in points if p["diverged"]]
            if ok:
                sc = ax.scatter(
                    [p[x] for p in ok],
                    [p[y] for p in ok],
                    c=[p["loss"] for p in ok],
                    cmap="viridis_r",
                    s=40,
                    edgecolors="black",
                    linewidths=0.3,
                )
                fig.colorbar(sc, ax=ax, shrink=0.9).set_label("final measured loss")
            if div:
                ax.scatter([p[x] for p in div], [p[y] for p in div], marker=DIVERGED_MARK, s=70, color="#b22222")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(x)
            ax.set_ylabel(y)
            ax.set_title(title)
        return fig

    alt = f"Scatter plot of {len(points)} trials by {x} and {y} on log axes, coloured by final measured loss."
    return Plot(name, caption, alt, lambda: _render(draw(), name, alt))


# ---------------------------------------------------------------------------------------------------
# Curves over training
# ---------------------------------------------------------------------------------------------------


def val_curve_plot(curves: Sequence[Mapping[str, Any]]) -> Plot:
    """Validation CE against tokens for the best trial of each method.

    ``curves``: ``{"method", "trial_id", "tokens": [...], "val_loss": [...]}``.
    """

    def draw() -> Figure:
        with rc_context(_RC):
            fig = _figure()
            ax = fig.add_subplot()
            for index, c in enumerate(curves):
                ax.plot(
                    c["tokens"],
                    c["val_loss"],
                    **line_style(c["method"]),
                    marker="o",
                    ms=3,
                    color=method_color(c["method"], index=index),
                    label=f"{c['method']}  ({c['trial_id']})",
                )
            ax.set_xlabel("training tokens")
            ax.set_ylabel("validation CE (nats)")
            ax.set_title("Validation CE of the best trial of each method")
            ax.xaxis.set_major_formatter(ticker.EngFormatter(sep=""))
            if curves:
                fig.legend(loc="outside lower center", ncols=min(3, len(curves)))
        return fig

    alt = f"Line chart of validation cross entropy against training tokens for {len(curves)} trials, one per method."
    caption = (
        "Validation CE (no penalty) over training for the best trial of each method; the convergence speed-up "
        "below reads the tokens at which each curve reaches the baseline's final value."
    )
    return Plot("val-curves", caption, alt, lambda: _render(draw(), "val-curves", alt))


DIAGNOSTICS: tuple[tuple[str, str], ...] = (
    ("mu_norm", "‖μ‖ of output embeddings"),
    ("logits_mean", "mean logit"),
    ("logits_absmax", "max |logit|"),
    ("log_z_mean", "mean log Z"),
)


def diagnostics_plot(curves: Sequence[Mapping[str, Any]]) -> Plot:
    """The OEC mechanism over training: ‖μ‖, mean logit, max |logit| and mean log Z per best trial.

    ``curves``: ``{"method", "trial_id", "tokens": [...], <metric>: [...]}`` for the metrics present.
    """
    present = [(k, t) for k, t in DIAGNOSTICS if any(k in c and c[k] for c in curves)]
    panels = present or list(DIAGNOSTICS)

    def draw() -> Figure:
        with rc_context(_RC):
            fig = _figure(width=7.6, height=5.2)
            axes = fig.subplots(2, 2, sharex=True).ravel()
            for ax, (key, title) in zip(axes, panels, strict=False):
                for index, c in enumerate(curves):
                    if key not in c or not c[key]:
                        continue
                    ax.plot(
                        c["tokens"],
                        c[key],
                        color=method_color(c["method"], index=index),
                        label=c["method"],
                        **line_style(c["method"], width=1.6),
                    )
                ax.set_title(title)
                ax.xaxis.set_major_formatter(ticker.EngFormatter(sep=""))
            finish_panel_grid(fig, axes, len(panels), "training tokens")
        return fig

    alt = (
        "Four line charts over training tokens: norm of the mean output embedding, mean logit, maximum absolute "
        f"logit and mean log partition function, for the best trial of each of {len(curves)} methods."
    )
    caption = (
        "The mechanism the OEC paper describes: without a fix, ‖μ‖ of the output embeddings grows and drags every "
        "logit with it (mean logit = μ·h); μ-loss holds ‖μ‖ small, μ-centering at 0; z-loss pins log Z but not ‖μ‖."
    )
    return Plot("diagnostics", caption, alt, lambda: _render(draw(), "diagnostics", alt))


def finish_panel_grid(fig: Figure, axes: Sequence[Any], used: int, xlabel: str) -> None:
    """A 2x2 grid of panels sharing x: hides the unused panels, labels the bottom row, and puts one legend
    (the first panel's) below the figure."""
    for ax in axes[used:]:
        ax.set_visible(False)
    for ax in axes[2:]:
        ax.set_xlabel(xlabel)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(6, len(labels)))


def speedup_plot(rows: Sequence[Mapping[str, Any]]) -> Plot:
    """Horizontal bars: convergence speed-up against baseline (1 = as fast)."""

    def draw() -> Figure:
        with rc_context(_RC):
            fig = _figure(width=6.4, height=max(1.8, 0.9 + 0.45 * len(rows)))
            ax = fig.add_subplot()
            names = [r["method"] for r in rows]
            values = [r["speedup"] if r["speedup"] is not None else 0.0 for r in rows]
            bars = ax.barh(range(len(rows)), values, color=[method_color(n, index=i) for i, n in enumerate(names)])
            for bar, r in zip(bars, rows, strict=True):
                text = f"{r['speedup']:.2f}x" if r["speedup"] is not None else "did not reach the baseline's final CE"
                ax.annotate(
                    text,
                    xy=(bar.get_width(), bar.get_y() + bar.get_height() / 2),
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=8.5,
                )
            ax.axvline(1.0, color="#444444", lw=1.0, ls="--")
            ax.set_yticks(range(len(rows)), names)
            ax.invert_yaxis()
            ax.set_xlabel("speed-up vs baseline (tokens baseline / tokens method)")
            ax.set_xlim(0, max([1.3, *[v * 1.35 for v in values]]))
            ax.grid(axis="y", visible=False)
            ax.set_title("Convergence speed-up against baseline")
        return fig

    alt = f"Bar chart of the convergence speed-up of {len(rows)} methods against the baseline; 1 means as fast."
    caption = (
        "Tokens the best baseline trial needs to reach its own final validation CE, divided by the tokens the "
        "method's best trial needs to reach the same value. Right of the dashed line = faster than baseline."
    )
    return Plot("speedup", caption, alt, lambda: _render(draw(), "speedup", alt))


def size_plot(sizes: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Plot:
    """LRS against model size, one line per method: this sweep solid with its 95% interval, the paper's
    runs at the same sizes dashed (``size_comparison`` rows)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    position = {s: i for i, s in enumerate(sizes)}

    def draw() -> Figure:
        with rc_context(_RC):
            fig = _figure()
            ax = fig.add_subplot()
            for i, method in enumerate(methods):
                mine = [r for r in rows if r["method"] == method]
                color = method_color(method, index=i)
                ours = [(position[r["model"]], r) for r in mine if r["lrs"] is not None]
                if ours:
                    xs = [x for x, _ in ours]
                    ax.plot(xs, [r["lrs"] for _, r in ours], marker="o", color=color, lw=1.8, label=method)
                    for x, r in ours:
                        if r["lrs_low"] is not None and r["lrs_high"] is not None:
                            ax.plot([x, x], [r["lrs_low"], r["lrs_high"]], color=color, lw=1.0, alpha=0.6)
                paper = [(position[r["model"]], r["paper_lrs"]) for r in mine if r["paper_lrs"] is not None]
                if paper:
                    ax.plot([x for x, _ in paper], [y for _, y in paper], marker="s", ms=4, color=color, lw=1.2,
                            ls="--", alpha=0.8, label=f"{method} (paper)")  # fmt: skip
            ax.set_xticks(range(len(sizes)), list(sizes))
            ax.set_xlabel("model size (preset)")
            ax.set_ylabel("LR sensitivity (lower is more robust)")
            ax.set_title("LR sensitivity by model size")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8, ncol=2)
        return fig

    alt = f"Line chart of the LR sensitivity of {len(methods)} methods at {len(sizes)} model sizes"
    caption = (
        "LR sensitivity of each method at each model size (solid, with its 95% interval over seeds where there "
        "are two or more seeds), and the OEC paper's value at the same size over the same learning rates (dashed) "
        "where the size is one of its five and the learning rates are points of its grid."
    )
    return Plot("sizes", caption, alt, lambda: _render(draw(), "sizes", alt))


def size_curves_plot(sizes: Sequence[str], rows: Sequence[Mapping[str, Any]], *, measured: str) -> Plot:
    """One panel per size: each method's loss against peak LR (solid), and the paper's test loss at the
    same size and learning rates (dashed) where it has one (``size_comparison`` rows)."""
    columns = min(3, len(sizes))
    lines = math.ceil(len(sizes) / columns)

    def draw() -> Figure:
        with rc_context(_RC):
            fig = _figure(width=3.0 * columns + 1.0, height=2.6 * lines + 0.8)
            axes = fig.subplots(lines, columns, sharex=True, squeeze=False).ravel()
            for ax, size in zip(axes, sizes, strict=False):
                for index, r in enumerate(x for x in rows if x["model"] == size):
                    color = method_color(r["method"], index=index)
                    if r["lrs_grid"]:
                        ax.plot(r["lrs_grid"], r["losses"], marker="o", ms=3, color=color, label=r["method"],
                                **line_style(r["method"], width=1.4))  # fmt: skip
                    published = zip(r["lrs_grid"], r["paper_losses"] or (), strict=False)
                    paper = [(x, y) for x, y in published if y is not None]
                    if paper:
                        ax.plot(*zip(*paper, strict=True), color=color, lw=1.0, ls=":", marker="s", ms=2.5, alpha=0.8)
                ax.set_xscale("log")
                ax.set_title(size)
            for ax in axes[len(sizes):]:
                ax.set_visible(False)
            for ax in axes[max(0, len(sizes) - columns): len(sizes)]:
                ax.set_xlabel("peak learning rate")
            handles, labels = axes[0].get_legend_handles_labels()
            if handles:
                fig.legend(handles, labels, loc="outside lower center", ncols=min(6, len(labels)))
        return fig

    alt = f"Line charts of loss against peak learning rate at {len(sizes)} model sizes, one panel per size"
    caption = (
        f"Final {measured} (mean over seeds; diverged runs at L0) against the peak learning rate, one panel per model "
        "size; dotted with squares: the OEC paper's mean test loss at the same size and learning rates, where it "
        "has that size (its vocabulary and data differ: compare shapes, not levels)."
    )
    return Plot("size-curves", caption, alt, lambda: _render(draw(), "size-curves", alt))
