"""vjfer.files: the JSON-object reader, the atomic write, the folder write check."""

from __future__ import annotations

from pathlib import Path

import pytest

from vjfer.errors import CacheError, ConfigError
from vjfer.files import atomic_write, check_writable, read_json_object


def test_read_json_object_names_the_file(tmp_path: Path):
    path = tmp_path / "x.json"
    with pytest.raises(ConfigError, match=r"x\.json is missing"):
        read_json_object(path)
    with pytest.raises(CacheError, match=r"^no x here$"):
        read_json_object(path, CacheError, missing="no x here")
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"x\.json: not readable as JSON .*; fix it"):
        read_json_object(path, hint="; fix it")
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"x\.json: expected a JSON object, got list$"):
        read_json_object(path)
    path.write_text('{"a": 1}')
    assert read_json_object(path) == {"a": 1}


def test_a_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path: Path):
    path = tmp_path / "f.txt"
    atomic_write(path, lambda f: f.write(b"old"))

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail, suffix=".tmp")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_check_writable_creates_the_folder_or_names_it(tmp_path: Path):
    check_writable(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())
    (tmp_path / "file").write_text("")
    with pytest.raises(CacheError, match=r"^cache directory .*file/sub: not writable \("):
        check_writable(tmp_path / "file" / "sub", CacheError, "cache directory ")
