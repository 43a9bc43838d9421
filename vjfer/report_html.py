"""report.html: the whole report as one self-contained page, to open, mail or attach.

Figures are base64 PNG data URIs and styles inline, with no script, font or stylesheet to fetch, so
the page reads the same offline. Tables are real `<table>`s (`vjfer.tables.render_html`), each
number's exact CSV value in a `data-value` attribute. `vjfer.report.build_report` decides the
content; this module only lays it out.
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# How to read the numbers: the one thing the paper's tables make easy to get wrong (docs/design.md,
# "Evaluation and metrics"). Plain text; each string is one paragraph.
HOW_TO_READ = [
    "UAR (unweighted average recall) is the mean of the per-class recalls, i.e. balanced "
    "accuracy: every emotion counts equally, however many videos it has. WAR (weighted average "
    "recall) is plain accuracy. PBV decides a video by the class with the highest summed clip "
    "probability, MV by the majority of its clips' own decisions.",
    'The paper\'s tables print a column called "UAR", but the reference metrics script divides '
    "true positives by true plus false positives: that column is macro precision. vjfer reports "
    "true UAR and macro precision under their own names, and sets the paper's figure beside the "
    'metric it really is: the paper\'s "UAR" beside our macro precision, its WAR beside our WAR. '
    "Δ is ours minus the paper's, in percentage points.",
    "All figures are in percent, mean ± sample standard deviation over the five subject-"
    "independent folds (no actor of a fold's test set is in its training set); the pooled "
    "columns score all folds' test predictions together, as some peers report. Published peer "
    "rows in Table III come from their own papers' protocols (other splits, face crops, "
    "fine-tuning): context, not a same-protocol comparison.",
    "Under a figure of ours, low–high is its 95 % bootstrap interval: the test videos of all "
    "folds pooled and resampled, by actor where the dataset has actors (all of an actor's videos "
    "drawn together), else by video. The tables' notes give the resamples and the seed.",
    "Each row's Protocol code (P1, P2, ...) says what was compared: the folds, which frames make "
    "a clip, which clips are scored, the spatial view and resolution, a frozen or fine-tuned "
    "encoder, the metric's definition, the voting rule and whether the figure is a fold mean or "
    "pooled. The codes are explained under each table and in the protocols table; two numbers "
    "compare only where their protocols agree.",
]

STYLE = """
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1d232b; background: #fff; margin: 0; }
main { max-width: 1240px; margin: 0 auto; padding: 20px 24px 64px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 40px 0 8px; padding-top: 8px; border-top: 2px solid #dfe3e8; }
h3 { font-size: 16px; margin: 24px 0 6px; }
p, li { max-width: 80ch; }
.lead { color: #4a5563; margin-top: 0; }
nav ol { columns: 2; margin: 8px 0; padding-left: 22px; }
nav a { color: #1f5fa8; text-decoration: none; }
.howto { background: #f3f7fc; border-left: 4px solid #1f5fa8; padding: 8px 18px; margin: 16px 0; }
.wide { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
td.nw { white-space: nowrap; }
td.long { overflow-wrap: anywhere; }  /* a source's "(arXiv:...)": wide tables still fit */
span.sd { font-size: 11px; color: #6b7480; }
span.ci { display: block; font-size: 11px; color: #6b7480; }  /* under the value */
p.none { color: #4a5563; margin: 2px 0; }
p.note { font-size: 13px; color: #4a5563; }
th, td { padding: 4px 5px; border-bottom: 1px solid #e4e7eb; text-align: left; \
vertical-align: top; }
th { background: #eef1f5; font-weight: 600; border-bottom: 2px solid #c9ced6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.na { text-align: center; color: #9aa3ae; }
tbody tr:nth-child(even) { background: #fafbfc; }
ul.notes { font-size: 13px; color: #4a5563; margin: 4px 0 12px; padding-left: 20px; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 18px; }
figure { margin: 8px 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #e4e7eb; }
figcaption { font-size: 13px; color: #4a5563; margin-top: 4px; }
.missing li { color: #8a4b00; }
footer { margin-top: 48px; font-size: 12px; color: #6b7480; }
"""


@dataclass
class PageFigure:
    caption: str
    path: Path  # a PNG, embedded into the page


@dataclass
class Section:
    """One <h2> section: paragraphs, then rendered tables (HTML fragments), then figures."""

    id: str
    title: str
    paragraphs: list[str] = field(default_factory=list)  # plain text, escaped here
    tables: list[str] = field(default_factory=list)  # from `vjfer.tables.render_html`
    figures: list[PageFigure] = field(default_factory=list)
    items: list[str] = field(default_factory=list)  # a plain bulleted list (no links)
    wide_figures: bool = False  # one figure per row (timelines, PCA) instead of a grid


def png_data_uri(path: str | Path) -> str:
    """`data:image/png;base64,...` of a PNG file; a ValueError names a file that is not a PNG."""
    data = Path(path).read_bytes()
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"{path} is not a PNG file; only PNG figures are embedded")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_html(figure: PageFigure) -> str:
    caption = html.escape(figure.caption)
    return (
        f'<figure><img src="{png_data_uri(figure.path)}" alt="{caption}" loading="eager">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def section_html(section: Section) -> str:
    parts = [f'<section id="{section.id}"><h2>{html.escape(section.title)}</h2>']
    parts += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
    if section.items:
        parts.append('<ul class="list">')
        parts += [f"<li>{html.escape(item)}</li>" for item in section.items]
        parts.append("</ul>")
    parts += section.tables
    if section.figures:
        parts.append('<div class="stack">' if section.wide_figures else '<div class="figures">')
        parts += [figure_html(f) for f in section.figures]
        parts.append("</div>")
    parts.append("</section>")
    return "\n".join(parts)


def page_html(
    title: str,
    lead: str,
    sections: Sequence[Section],
    footer: str,
    how_to_read: Sequence[str] = HOW_TO_READ,
) -> str:
    """The whole page: title, lead line, contents, "how to read this" (the report's, or the
    paragraphs of another page: `vjfer.bench_page`), the sections, footer."""
    contents = "".join(f'<li><a href="#{s.id}">{html.escape(s.title)}</a></li>' for s in sections)
    howto = "".join(f"<p>{html.escape(p)}</p>" for p in how_to_read)
    return (
        "\n".join(
            [
                "<!DOCTYPE html>",
                '<html lang="en">',
                "<head>",
                '<meta charset="utf-8">',
                '<meta name="viewport" content="width=device-width, initial-scale=1">',
                f"<title>{html.escape(title)}</title>",
                f"<style>{STYLE}</style>",
                "</head>",
                "<body><main>",
                f"<h1>{html.escape(title)}</h1>",
                f'<p class="lead">{html.escape(lead)}</p>',
                f'<nav aria-label="contents"><ol>{contents}</ol></nav>',
                f'<div class="howto" id="how-to-read"><h3>How to read this</h3>{howto}</div>',
                *(section_html(s) for s in sections),
                f"<footer>{html.escape(footer)}</footer>",
                "</main></body>",
                "</html>",
            ]
        )
        + "\n"
    )


def write_page(
    path: str | Path,
    title: str,
    lead: str,
    sections: Sequence[Section],
    footer: str,
    how_to_read: Sequence[str] = HOW_TO_READ,
) -> Path:
    """Write `page_html(...)` to `path` (UTF-8); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page_html(title, lead, sections, footer, how_to_read), encoding="utf-8")
    log.info("report page: %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path
