"""vjfer.schemas: a JSON file of the wrong shape is one line naming the file and the field, through
the reader and through the CLI (issue 32's hostile manifests), and every file vjfer writes fits."""

from __future__ import annotations

import json
import re
import shutil

import h5py
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vjfer.cache import open_cache
from vjfer.cache.format import MANIFEST
from vjfer.cli import cli
from vjfer.errors import CacheError, CheckpointError, ConfigError
from vjfer.files import MAX_JSON_BYTES, read_json_object
from vjfer.results import read_probe_run
from vjfer.schemas import Manifest, validation_error


def _set(path: str, value):
    """A change of manifest field `path` ("shards.0.name") to `value`."""

    def change(manifest: dict) -> None:
        *parents, last = path.split(".")
        node = manifest
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = value

    return change


# case -> (change of the manifest, what the one line must say)
HOSTILE = {
    "shard name a number": (_set("shards.0.name", 7), r"\$\.shards\[0\]\.name"),
    "videos a string": (_set("videos", "all"), r"Expected `array`, got `str` - at `\$\.videos`"),
    "video entry a number": (_set("videos.0", 3), r"\$\.videos\[0\]"),
    "shards an object": (_set("shards", {"a": 1}), r"\$\.shards"),
    "settings a list": (_set("settings", [1]), r"\$\.settings"),
    "dataset not a string": (_set("dataset", 5), r"\$\.dataset"),
    "fingerprint NaN": (_set("fingerprint", float("nan")), r"\$\.fingerprint"),
    "class_names a string": (_set("class_names", "angry"), r"\$\.class_names"),
    "status unknown": (_set("videos.0.status", "maybe"), r"\$\.videos\[0\]"),
}


@pytest.fixture
def copy(tiny_cache, tmp_path):
    """A private copy of a small shared cache (the shared one must stay unchanged)."""
    target = tmp_path / "c"
    shutil.copytree(tiny_cache(), target)
    return target


@pytest.mark.parametrize("case", HOSTILE)
def test_a_manifest_of_the_wrong_shape_is_one_line_naming_the_field(copy, case):
    change, words = HOSTILE[case]
    manifest = json.loads((copy / MANIFEST).read_text())
    change(manifest)
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match=re.escape(str(copy / MANIFEST)) + ": .*" + words):
        open_cache(copy)
    result = CliRunner().invoke(cli, ["cache", "verify", str(copy)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code not in (0, None) and "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert re.search(words, lines[0]), lines[0]


def test_deep_nesting_and_huge_files_are_refused_before_parsing(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(CacheError, match=r"deep.json: not readable as JSON \(nested too deep\)"):
        read_json_object(deep, CacheError)
    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:  # sparse: no bytes written, the size is what is refused
        f.truncate(MAX_JSON_BYTES + 1)
    with pytest.raises(CacheError, match=r"huge.json: \d+ bytes, more than any JSON file"):
        read_json_object(huge, CacheError)


def test_the_manifests_vjfer_writes_fit_their_schema(tiny_cache):
    """Every `open_cache` of the suite checks an extracted manifest; this one names the claim."""
    manifest = json.loads((tiny_cache() / MANIFEST).read_text())
    assert validation_error(manifest, Manifest) is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(node, prefix=()):
    """Every (path to a node) of a JSON document, the root's () first."""
    yield prefix
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in children:
        yield from _paths(child, (*prefix, key))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_change_of_a_manifest_opens_or_is_one_cache_error(tiny_cache, tmp_path_factory, data):
    """Hypothesis replaces one node of a real manifest with hostile JSON: the cache opens (the
    change was harmless) or `open_cache` raises one CacheError line; nothing else."""
    source = tiny_cache()
    manifest = json.loads((source / MANIFEST).read_text())
    paths = list(_paths(manifest))
    where = data.draw(st.sampled_from(paths[1:]))
    node = manifest
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = data.draw(JSON)
    copy = tmp_path_factory.mktemp("hostile") / "c"
    shutil.copytree(source, copy)
    (copy / MANIFEST).write_text(json.dumps(manifest))
    try:
        open_cache(copy)
    except CacheError as err:
        assert "\n" not in str(err)


@pytest.mark.parametrize(
    "attr, value, words",
    [
        ("video_ids", "5", r"attributes: Expected `array`, got `int` - at `\$\.video_ids`"),
        ("settings", "[1]", r"attributes: Expected `object`, got `array` - at `\$\.settings`"),
        ("failures", "[{", r"cannot read shard .*shard-00000\.h5"),
    ],
)
def test_a_shard_attribute_of_the_wrong_shape_is_one_line(copy, attr, value, words):
    with h5py.File(copy / "shard-00000.h5", "r+") as f:
        f.attrs[attr] = value
    with pytest.raises(CacheError, match=words):
        open_cache(copy)
    result = CliRunner().invoke(cli, ["cache", "verify", str(copy)])  # a report: the shard named
    assert result.exit_code not in (0, None) and "Traceback" not in result.output
    assert re.search(words, result.output) and "1 problem(s)" in result.output, result.output


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    fields=st.fixed_dictionaries(
        {"dataset": JSON, "folds": st.just([1]) | JSON, "per_fold": JSON, "mean": JSON}
    ),
    metrics=JSON,
)
def test_any_run_summary_or_fold_metrics_reads_or_is_one_line(tmp_path, fields, metrics):
    """Hypothesis: a summary.json with every key a reader needs, each holding hostile JSON, and a
    hostile fold-1/metrics.json: `read_probe_run` returns, or one ConfigError names the file."""
    run = tmp_path / "run"
    (run / "fold-1").mkdir(parents=True, exist_ok=True)
    (run / "summary.json").write_text(json.dumps(fields))
    (run / "fold-1" / "metrics.json").write_text(json.dumps(metrics))
    try:
        read_probe_run(run)
    except ConfigError as err:
        assert "\n" not in str(err)


def test_a_probe_file_of_the_wrong_shape_is_one_line(tmp_path):
    """A probe.pt whose metadata has the wrong type is named before any field is used."""
    from vjfer.probe.model import build_probe, load_probe, probe_checkpoint

    meta = {"probe": "linear", "embed_dim": 8, "num_classes": 3, "num_heads": 2}
    good = probe_checkpoint(build_probe("linear", 8, 3, 2), meta)
    torch.save(good, tmp_path / "probe.pt")
    assert load_probe(tmp_path / "probe.pt")[1]["num_classes"] == 3
    torch.save({**good, "num_classes": "3"}, tmp_path / "bad.pt")
    with pytest.raises(
        CheckpointError, match=r"bad.pt: Expected `int`, got `str` - at `\$\.num_classes`"
    ):
        load_probe(tmp_path / "bad.pt")
