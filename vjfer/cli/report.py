"""`vjfer report` (tables, figures and report.html of runs) and `vjfer compare` (runs side by
side)."""

from __future__ import annotations

from pathlib import Path

import click

from vjfer.cli.group import cli, device, echo_lines


@cli.command()
@click.argument("run_dirs", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("report"),
    show_default=True,
    help="Report folder.",
)
@click.option(
    "--cache",
    "cache_root",
    type=click.Path(path_type=Path),
    default=Path("cache"),
    show_default=True,
    help="Caches for the PCA figure, failures list and timelines (skipped, with a note, when "
    "absent).",
)
@device("cpu", "Device for the PCA figure's probe pass.")
def report(run_dirs: tuple[Path, ...], out: Path, cache_root: Path, device: str) -> None:
    """Tables II-IV and detail tables (Markdown, CSV), confusion matrices, PCA figure and emotion
    timelines (PNG), all of it also as one self-contained report.html (printed last)."""
    from vjfer.cache import find_caches
    from vjfer.report import build_report

    caches = find_caches(cache_root, complete=True) if cache_root.exists() else []
    where = list(run_dirs) or [Path("runs")]
    written = build_report(where, out, caches=caches, device=device, require_runs=True)
    for path in written:
        click.echo(str(path))


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("report"),
    show_default=True,
    help="Folder for compare.md and compare.csv.",
)
def compare(run_dirs: tuple[Path, ...], out: Path) -> None:
    """Probe runs side by side, with paired per-fold differences to the first RUN.

    Each RUN is a `vjfer probe` directory; all must be of one dataset and the same folds.
    """
    from vjfer.compare import compare_runs
    from vjfer.tables import render_markdown, write_table

    table = compare_runs(run_dirs)
    echo_lines(render_markdown(table))
    for path in write_table(table, out):
        click.echo(str(path))
