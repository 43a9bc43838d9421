"""Tables as values and their renderings: Markdown, CSV and HTML, one function per format.

A `Table` holds a DataFrame of values (metrics in percent, a column `X std` beside its `X`) and its
caption. Computing a table (`report`, `cross`, `compare`, `run_details`) is kept apart from
rendering it here, so every module that produces a table can render it without the report.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vjfer.errors import ConfigError

DATASET_TITLES = {
    "ravdess": "RAVDESS",
    "crema-d": "CREMA-D",
    "dfew": "DFEW",
    "ferv39k": "FERV39k",
    "mafw": "MAFW",
    "list": "List file",
}
STD = " std"  # suffix of a column holding the std of the column before it
# suffixes of the columns holding an interval (`X low`, `X high`) of the column `X`
LOW, HIGH = " low", " high"


@dataclass
class Table:
    """A computed table: `frame` holds the values (percent for metrics); the rest is caption."""

    name: str  # file stem, e.g. "table2"
    title: str
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Rendering: one function per format, looked up by name.


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, (float, np.floating)):
        return "—" if math.isnan(value) else f"{value:.2f}"
    # a label is text, never markup: `|` would split the row, `<script>` would run in a viewer
    return str(value).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _display_columns(frame: pd.DataFrame) -> list[tuple[str, str | None]]:
    """(column, its std column or None), folding each `X std` into the `X` before it (and each
    `X low` / `X high` pair too: `_interval_columns`)."""
    cols, out = list(frame.columns), []
    folded = {c for x in cols for c in (x + LOW, x + HIGH) if x + LOW in cols and x + HIGH in cols}
    for c in cols:
        if (c.endswith(STD) and c.removesuffix(STD) in cols) or c in folded:
            continue
        out.append((c, c + STD if c + STD in cols else None))
    return out


def _interval_columns(frame: pd.DataFrame, col: str) -> tuple[str, str] | None:
    """(`col low`, `col high`) when the frame has both, else None."""
    low, high = col + LOW, col + HIGH
    return (low, high) if low in frame.columns and high in frame.columns else None


def _interval_text(low, high, html_form: bool = False) -> str | None:
    """`[low, high]` to one decimal (compact beside a mean ± std); on the page, where it has a
    line of its own under the value, `low–high` (narrower: wide tables must fit a laptop's
    width); None when either bound is missing."""
    if any(
        v is None or (isinstance(v, (float, np.floating)) and math.isnan(v)) for v in (low, high)
    ):
        return None
    return f"{low:.1f}–{high:.1f}" if html_form else f"[{low:.1f}, {high:.1f}]"


def render_markdown(table: Table) -> str:
    """A GitHub pipe table under a heading, `X` and `X std` shown as one `mean ± std` cell."""
    shown = _display_columns(table.frame)
    lines = [f"## {table.title}", ""]
    lines.append("| " + " | ".join(_cell(c) for c, _ in shown) + " |")  # class names head some
    lines.append("|" + "|".join("---" for _ in shown) + "|")
    for _, row in table.frame.iterrows():
        cells = []
        for col, std in shown:
            text = _cell(row[col])
            if std is not None and text != "—" and _cell(row[std]) != "—":
                text += f" ± {_cell(row[std])}"
            bounds = _interval_columns(table.frame, col)
            if bounds and text != "—" and (ci := _interval_text(*(row[b] for b in bounds))):
                text += f" {ci}"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    if table.notes:
        lines.append("")
        lines.extend(f"- {note}" for note in table.notes)
    return "\n".join(lines) + "\n"


def render_csv(table: Table) -> str:
    """The values as CSV, every column kept (std columns apart), full precision."""
    return table.frame.to_csv(index=False)


DELTA = "Δ"  # a column of differences (ours − paper): its numbers are shown with their sign
SHORT_TEXT = 16  # text cells up to this many characters do not wrap on the page
LONG_TEXT = 40  # longer text cells (sources, protocols) may break inside a word to fit


def _html_cell(value, std=None, signed: bool = False, interval=None) -> str:
    """A <td>: numbers to 2 decimals as in Markdown, with the CSV's exact value in `data-value`
    (and `data-std`, `data-low`, `data-high`) so the page and the CSV can be compared number by
    number; an interval (low, high) goes on a line of its own under the value."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return '<td class="na">—</td>'
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        size = len(str(value))  # "CREMA-D", "40 40 40 40 40": keep on one line
        cls = ' class="nw"' if size <= SHORT_TEXT else ' class="long"' if size > LONG_TEXT else ""
        return f"<td{cls}>{html.escape(str(value))}</td>"
    if isinstance(value, (int, np.integer)):
        return f'<td class="num" data-value="{int(value)}">{int(value)}</td>'
    attrs, text = f' data-value="{float(value)!r}"', f"{value:+.2f}" if signed else f"{value:.2f}"
    if std is not None and not math.isnan(std):
        attrs, text = (
            attrs + f' data-std="{float(std)!r}"',
            text + f' <span class="sd">± {std:.2f}</span>',
        )
    if interval is not None and (ci := _interval_text(interval[0], interval[1], True)):
        attrs += f' data-low="{float(interval[0])!r}" data-high="{float(interval[1])!r}"'
        text += f' <span class="ci">{ci}</span>'

    return f'<td class="num"{attrs}>{text}</td>'


def render_html(table: Table) -> str:
    """An HTML fragment: the title, a real <table> (`X` and `X std` in one `mean ± std` cell, the
    CSV's values in data attributes) and the notes. `vjfer.report_html` places it on the page."""
    if table.frame.empty:  # say so rather than draw a header over nothing
        lines = [
            f'<h3 id="{table.name}">{html.escape(table.title)}</h3>',
            '<p class="none">None.</p>',
        ]
        return (
            "\n".join(lines + [f'<p class="note">{html.escape(n)}</p>' for n in table.notes]) + "\n"
        )
    shown = _display_columns(table.frame)
    head = "".join(f"<th>{html.escape(c)}</th>" for c, _ in shown)
    body = []
    bounds = {c: _interval_columns(table.frame, c) for c, _ in shown}
    for row in table.frame.astype(object).to_dict("records"):  # object: ints stay ints
        cells = "".join(
            _html_cell(
                row[c],
                None if s is None else row[s],
                c.startswith(DELTA),
                None if (b := bounds[c]) is None else (row[b[0]], row[b[1]]),
            )
            for c, s in shown
        )
        body.append(f"<tr>{cells}</tr>")
    lines = [
        f'<h3 id="{table.name}">{html.escape(table.title)}</h3>',
        f'<div class="wide"><table data-table="{table.name}"><thead><tr>{head}</tr></thead>',
        "<tbody>",
        *body,
        "</tbody></table></div>",
    ]
    if table.notes:
        lines.append('<ul class="notes">')
        lines += [f"<li>{html.escape(note)}</li>" for note in table.notes]
        lines.append("</ul>")
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[Table], str]] = {
    "md": render_markdown,
    "csv": render_csv,
    "html": render_html,
}


def get_renderer(fmt: str) -> Callable[[Table], str]:
    if fmt not in RENDERERS:
        raise ConfigError(f"unknown table format {fmt!r}; known: {', '.join(RENDERERS)}")
    return RENDERERS[fmt]


def write_table(table: Table, out_dir: Path, formats: Sequence[str] = ("md", "csv")) -> list[Path]:
    """Write `out_dir/<table.name>.<fmt>` for each format; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{table.name}.{fmt}"
        path.write_text(get_renderer(fmt)(table))
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------
# Cells.


def percent(value: float | None) -> float:
    """A fraction as percent; None (no value) as NaN, which tables show as a dash."""
    return float("nan") if value is None else 100.0 * value


# A summary's metrics that the tables show, with their column names, in column order.
METRIC_COLUMNS: dict[str, str] = {"uar": "UAR", "war": "WAR", "macro_precision": "Macro precision"}


def interval_cells(intervals: dict, columns: dict[str, str] = METRIC_COLUMNS) -> dict:
    """{"UAR low", "UAR high", ...} in percent from {metric: (low, high)} (fractions); NaN (no
    interval shown) for a metric without one."""
    row = {}
    for key, col in columns.items():
        low, high = intervals.get(key, (None, None))
        row[col + LOW], row[col + HIGH] = percent(low), percent(high)
    return row


def metric_cells(mean: dict) -> dict:
    """{"UAR", "UAR std", "WAR", ...} from a summary's {metric: {mean, std}} (fractions)."""
    row = {}
    for key, col in METRIC_COLUMNS.items():
        agg = mean.get(key) or {}
        row[col], row[col + STD] = percent(agg.get("mean")), percent(agg.get("std"))
    return row


def format_percent(value: float | None, digits: int = 2, missing: str = "–") -> str:
    """A fraction as percent text with `digits` decimals; None as `missing`."""
    return missing if value is None else f"{100 * value:.{digits}f}"
