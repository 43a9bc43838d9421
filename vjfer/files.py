"""Files that are whole or absent: a JSON object read with an error naming the file, a write
through a temporary file that is fsynced and renamed (then its folder fsynced), and the check
that a folder can be created and written before any work starts.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from vjfer.errors import ConfigError, VjferError
from vjfer.schemas import validation_error

# A JSON file vjfer reads back is at most this large (a FERV39k manifest is ~15 MB); a larger one is
# refused before it is read, so a stray or hostile file cannot fill the memory.
MAX_JSON_BYTES = 256 * 2**20


def read_json_object(
    path: str | Path,
    error: type[VjferError] = ConfigError,
    *,
    missing: str | None = None,
    hint: str = "",
    schema: type | None = None,
) -> dict:
    """The JSON object in `path`; `error` naming the file when it is missing (`missing`, if
    given, is the whole message), too large, unreadable, not JSON, nested deeper than the parser
    allows, not an object, or not of `schema` (a `vjfer.schemas` record; the message names the
    field) — `hint` appended."""
    path = Path(path)
    try:
        if (size := path.stat().st_size) > MAX_JSON_BYTES:
            raise error(f"{path}: {size} bytes, more than any JSON file vjfer writes{hint}")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise error(missing or f"{path} is missing") from err
    except (OSError, ValueError) as err:
        raise error(f"{path}: not readable as JSON ({err}){hint}") from err
    except RecursionError as err:  # `[[[[...` deeper than the interpreter's recursion limit
        raise error(f"{path}: not readable as JSON (nested too deep){hint}") from err
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object, got {type(data).__name__}{hint}")
    if schema is not None:
        if (problem := validation_error(data, schema)) is not None:
            raise error(f"{path}: {problem}{hint}")
    return data


def read_utf8(path: str | Path, what: str, error: type[VjferError] = ConfigError) -> str:
    """The text of a file a person's tools wrote: UTF-8 with or without a BOM (line ends are the
    caller's `splitlines`'); `error` naming the byte a non-UTF-8 file (Latin-1, UTF-16) fails at."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise error(
            f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); save the {what} as UTF-8"
        ) from None
    except OSError as err:
        raise error(f"{path}: cannot read the {what} ({err.strerror or err})") from err


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_file(tmp: Path, path: Path) -> None:
    """fsync the written file `tmp`, rename it to `path` and fsync the folder: `path` is then
    complete, and was never half-written."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write(path: Path, write: Callable[[BinaryIO], object], suffix: str = ".partial") -> None:
    """`write(f)` into `<path><suffix>`, then `commit_file`; on any failure the file is removed."""
    tmp = path.with_name(path.name + suffix)
    try:
        with open(tmp, "wb") as f:
            write(f)
        commit_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_writable(folder: Path, error: type[VjferError] = ConfigError, what: str = "") -> None:
    """Create `folder` (with its parents) and write a file in it, before any work: `error`
    ("<what><folder>: not writable (<reason>); ...") when either fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vjfer-write-test-"):
            pass
    except OSError as err:
        raise error(
            f"{what}{folder}: not writable ({err.strerror or err}); choose another folder "
            "or fix its permissions"
        ) from err
