"""The `vjfer` command group (`cli`), the one-line error printing (`Group`) and the option helpers
every command shares: a dataset root, a device, and the click callbacks that read option values
with the library's parsers (`vjfer.probe.config`)."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import sys
from pathlib import Path

import click

from vjfer import __version__
from vjfer.errors import CacheError, VjferError

DATASET = click.Choice(
    ["ravdess", "crema-d", "dfew", "ferv39k", "mafw", "list"], case_sensitive=False
)
LIST_OPTION = click.option(
    "--list",
    "list_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="--dataset list: CSV with path,label[,group][,fold][,split]; paths relative to --root.",
)
SPLITS_HELP = (
    "Fold protocol: RAVDESS paper (5 folds, default) or mae-dfer (6 folds, fold k = actors "
    "4k-3..4k); a list file: file (its fold/split columns) or groups (seeded group folds)."
)


class Group(click.Group):
    """Prints a VjferError, a bad option value and an OSError as one `error:` line and exits
    non-zero (1; 2 for a usage error, as click does) instead of a traceback or a usage block."""

    def invoke(self, ctx: click.Context):
        words = [*getattr(ctx, "_protected_args", []), *ctx.args]  # before click consumes them
        try:
            return super().invoke(ctx)
        except VjferError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(1)
        except click.UsageError as err:  # a bad value, a missing option: one line, with the help
            where = err.ctx.command_path if err.ctx is not None else ctx.command_path
            click.echo(f"error: {err.format_message()} (see `{where} --help`)", err=True)
            sys.exit(2)
        except OSError as err:  # not vjfer's own: name the file and what to check
            name = err.filename or _where_written(words)
            if err.errno == errno.ENOSPC:
                fix = "free space there and rerun: the command resumes from what it finished"
            else:
                fix = "check that it exists and that this user may read (or write) it, or give "
                fix += "another path"
            click.echo(f"error: {name}: {err.strerror or err}: {fix}", err=True)
            sys.exit(1)


def _where_written(words: list[str]) -> str:
    """For an OSError that names no file (a full disk while a library writes): the folder the
    command writes to, from its --out or --cache words."""
    for option in ("--out", "--cache"):
        if option in words[:-1]:
            return f"a file under {words[words.index(option) + 1]}"
    return "a file the command writes"


def dataset_root(dataset: str, root: Path | None) -> Path:
    """--root, else the dataset's environment variable; a clear error naming both when neither."""
    if root is not None:
        return root
    from vjfer.datasets import ENV_VARS

    env = ENV_VARS[dataset.lower()]
    if os.environ.get(env):
        return Path(os.environ[env])
    raise click.UsageError(f"give the {dataset} folder with --root DIR or set {env}")


def reject_checkpoint_for_tiny(encoder: str, checkpoint: Path | None) -> None:
    """--checkpoint on the command line with the tiny encoder (which has none) is an error; one
    from VJFER_CHECKPOINT is ignored, as the variable serves the real encoders."""
    ctx = click.get_current_context()
    given = ctx.get_parameter_source("checkpoint") == click.core.ParameterSource.COMMANDLINE
    if encoder == "tiny" and checkpoint is not None and given:
        raise click.UsageError(
            "--checkpoint does not apply to --encoder tiny (seeded random weights); drop it"
        )


def echo_lines(text: str) -> None:
    click.echo(text.rstrip("\n"))


def caches_at(path: Path) -> list[Path]:
    """Cache directories at or under `path`; an error when there is none."""
    from vjfer.cache import find_caches

    found = find_caches(path)
    if not found:
        raise CacheError(f"no vjfer cache (manifest.json or shard-*.h5) at or under {path}")
    return found


@click.group(cls=Group)
@click.version_option(__version__, prog_name="vjfer")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def cli(verbose: bool) -> None:
    """vjfer: frozen V-JEPA encoders + attentive probes for facial expression recognition.

    Stage 1 `extract` encodes every clip once into a feature cache; stage 2 `probe` trains and
    evaluates probes from that cache alone. `vjfer demo` runs everything on generated data.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("matplotlib").setLevel(logging.WARNING)


def parsed(name: str, *args):
    """A click callback: the option value read by the parser `name` of `vjfer.probe.config`
    (imported when an option is parsed), its OptionError a bad-parameter error."""

    def callback(ctx, param, value):
        from vjfer.probe import config

        try:
            return getattr(config, name)(value, *args)
        except config.OptionError as err:
            raise click.BadParameter(err.message) from None

    return callback


def number_list(kind, low: float | None = None, strict: bool = False):
    """A click callback: "1e-3,3e-3" -> (0.001, 0.003) (`vjfer.probe.config.parse_numbers`)."""
    return parsed("parse_numbers", kind, "", low, strict)


fold_list = parsed("parse_folds")
layer_list = parsed("parse_layers")
probe_list = parsed("parse_probes")


def device_option(ctx, param, value: str) -> str:
    """--device: auto, cpu, cuda or cuda:N, and a CUDA device only where one exists."""
    from vjfer.env import check_device

    try:
        return check_device(value)
    except VjferError as err:
        raise click.BadParameter(str(err)) from None


def device(default: str = "auto", help: str = "auto, cpu, cuda or cuda:N."):
    """The --device option of the commands that run a probe."""
    return click.option(
        "--device", default=default, show_default=True, callback=device_option, help=help
    )


def config_option(config: type, choices: dict | None = None):
    """A maker of click options defaulting to a field of the dataclass `config` (the option's
    name, `--batch-size` -> batch_size, or `field=`), shown in --help; a field in `choices` is a
    Choice."""
    fields = {f.name: f for f in dataclasses.fields(config)}

    def option(*names: str, field: str | None = None, text: bool = False, **kw):
        field = field or names[0].removeprefix("--").split("/")[0].replace("-", "_")
        default = fields[field].default
        kw.setdefault("default", str(default) if text else default)
        kw.setdefault("show_default", True)
        if choices and field in choices:
            kw.setdefault("type", click.Choice(choices[field]))
        return click.option(*names, **kw)

    return option


def apply(options: list, f):
    """`f` decorated with `options`, the first listed first in --help."""
    for option in reversed(options):
        f = option(f)
    return f
