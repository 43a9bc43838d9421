"""`vjfer cache info|verify|convert|compare`: inspect, verify and convert a feature cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vjfer.cli.group import Group, caches_at, cli, config_option, echo_lines
from vjfer.convert import ConvertConfig

convert_option = config_option(ConvertConfig)


@cli.group(cls=Group)
def cache() -> None:
    """Inspect or verify a feature cache."""


@cache.command("info")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def cache_info_cmd(path: Path) -> None:
    """Settings, videos, clips, size and failures of the cache(s) at or under PATH."""
    from vjfer.cache import cache_info, format_cache_info

    for directory in caches_at(path):
        echo_lines(format_cache_info(cache_info(directory)))


@cache.command("verify")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    help="Dataset folder: also check that every video is cached or listed as failed.",
)
def cache_verify_cmd(path: Path, root: Path | None) -> None:
    """Open every shard, check shapes and counts against the manifest, and look for NaN/Inf."""
    from vjfer.cache import open_cache, verify_cache
    from vjfer.datasets import index_dataset

    bad = 0
    for directory in caches_at(path):
        records = None
        if root is not None:
            opened = open_cache(directory)  # a list dataset's list file: the one extracted from
            listed = opened.manifest["config"]["list_file"] if opened.dataset == "list" else None
            records = index_dataset(opened.dataset, root, list_file=listed)
        report = verify_cache(directory, records)
        echo_lines(str(report))
        bad += not report.ok
    sys.exit(1 if bad else 0)


@cache.command("convert")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--store",
    required=True,
    metavar="FORMAT",
    help="int8, fp8, pool2, pca:K or a '+' chain (pool2+int8, pool2+pca:32+int8).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Target cache directory; default: beside SOURCE, named by its fingerprint.",
)
@click.option("--pca-fold", type=int, help="pca: the test fold; the basis is fitted on the others.")
@convert_option("--pca-clips", type=int, help="pca: training clips the basis is fitted on.")
@convert_option(
    "--cost-clips", type=int, help="Clips the token error (and probe agreement) is measured on."
)
@click.option(
    "--run",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A probe run on SOURCE: also measure its probes' agreement.",
)
def cache_convert_cmd(source: Path, **options) -> None:
    """Write the cache at SOURCE in a compact store format (resumable; SOURCE is only read),
    and write what it cost to store_cost.json."""
    from vjfer.convert import ConvertConfig, convert, describe

    echo_lines(describe(convert(ConvertConfig(source=source, **options))))


@cache.command("compare")
@click.argument("a", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("b", type=click.Path(exists=True, file_okay=False, path_type=Path))
@convert_option("--clips", field="cost_clips", type=int, help="Clips compared.")
@click.option(
    "--run",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A probe run on A: also measure its probes' agreement on B.",
)
def cache_compare_cmd(a: Path, b: Path, clips: int, run: Path | None) -> None:
    """What storing fp16 cache A as cache B costs: size ratio, token error, probe agreement
    (JSON)."""
    from vjfer.cache import open_cache
    from vjfer.convert import compare_caches

    click.echo(
        json.dumps(compare_caches(open_cache(a), open_cache(b), clips=clips, run=run), indent=1)
    )
