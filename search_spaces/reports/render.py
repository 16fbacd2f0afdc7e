"""The report of a sweep written out: JSON here, Markdown and HTML by their own modules. Rendering reads
only the sweep directory (no clock, no randomness), so rendering twice gives the same bytes."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from search_spaces.reports.report import Report, build, without_location
from search_spaces.reports.report_html import to_html
from search_spaces.reports.report_markdown import to_markdown
from search_spaces.run import storage
from search_spaces.run.sweep_dir import REPORT_FORMATS as FORMATS
from search_spaces.run.sweep_dir import report_file


def to_json(report: Report) -> str:
    return json.dumps(report.data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


WRITERS: dict[str, Callable[[Report], str]] = {"json": to_json, "md": to_markdown, "html": to_html}


def render_text(sweep_dir: str, fmt: str, *, links: Mapping[str, str] | None = None,
                hide_location: bool = False) -> str:
    """The report in ``fmt``, in memory: reads the sweep dir and writes nothing (a sweep without results,
    or without a sweep dir yet, gets a report that says so). ``hide_location``: for a reader who may not
    see where the sweep's files live on the server (``without_location``)."""
    if fmt not in FORMATS:
        raise ValueError(f"format: unknown {fmt!r}; choose from {', '.join(FORMATS)}")
    report = build(str(sweep_dir), links=links)
    return WRITERS[fmt](without_location(report, str(sweep_dir)) if hide_location else report)


def render(
    sweep_dir: str,
    *,
    formats: Sequence[str] = FORMATS,
    links: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Writes ``report.<format>`` for each of ``formats`` into ``sweep_dir``; returns format → path."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"formats: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(FORMATS)}")
    if not formats:
        raise ValueError("formats: give at least one of " + ", ".join(FORMATS))
    if not storage.is_uri(sweep_dir) and not storage.local_path(sweep_dir).is_dir():
        raise FileNotFoundError(f"sweep directory not found: {sweep_dir}")
    report = build(str(sweep_dir), links=links)
    written: dict[str, str] = {}
    for fmt in FORMATS:
        if fmt in formats:
            path = storage.join(str(sweep_dir), report_file(fmt))
            storage.write_text(path, WRITERS[fmt](report))  # atomic replacement
            written[fmt] = path
    return written
