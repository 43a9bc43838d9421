"""`extract --protocol` on generated DFEW, FERV39k and MAFW trees (issue 27's Done-when): every
video's evaluation clips are the peer's test clips frame for frame (MAE-DFER's two views at the
real step of each dataset, DFER-CLIP's segment middles), and `probe --fold all` and `report` run on
each cache (the tiny encoder, 1 epoch)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_cli
from tests.test_clips import _dfer_clip_test_indices, _mae_dfer_test_views
from vjfer.cache import open_cache
from vjfer.synthetic_frames import make_dfew, make_ferv39k, make_mafw

pytestmark = pytest.mark.slow

TREES = {"dfew": make_dfew, "ferv39k": make_ferv39k, "mafw": make_mafw}
STEP = {"dfew": 4, "ferv39k": 1, "mafw": 4}  # MAE-DFER's scripts: sr
EXTRACT = ("--encoder", "tiny", "--workers", "0", "--device", "cpu", "--no-progress")
PROBE = ("--epochs", "1", "--device", "cpu", "--num-workers", "0", "--no-progress")


def expected(protocol: str, dataset: str, n: int) -> list[list[int]]:
    """The peer's test clips of a video of n frames, from the loaders' code as written."""
    if protocol == "dfer-clip":
        return [list(map(int, _dfer_clip_test_indices(n)))]
    views = _mae_dfer_test_views(n, STEP[dataset])
    return [views[0]] if views[0] == views[1] else views


@pytest.mark.parametrize("dataset", TREES)
def test_each_protocol_stores_the_peer_s_test_clips_and_runs_to_a_report(dataset, tmp_path):
    root = TREES[dataset](tmp_path / dataset, clips_per_class=1)
    for protocol in ("mae-dfer", "dfer-clip"):
        cache_root, runs = tmp_path / f"cache-{protocol}", tmp_path / f"runs-{protocol}"
        args = ("--dataset", dataset, "--root", root, "--cache", cache_root, *EXTRACT)
        run_cli("extract", *args, "--protocol", protocol)
        (path,) = (cache_root / dataset).iterdir()
        with open_cache(path) as cache:
            assert cache.settings["protocol"] == protocol and cache.settings["views"] == "whole"
            for vid, n in zip(cache.videos["video_id"], cache.videos["n_frames"], strict=True):
                stored = cache.clip_frames(vid)[cache.eval_clips(vid)].tolist()
                assert stored == expected(protocol, dataset, int(n)), (vid, n)
        run_cli("probe", "--dataset", dataset, "--cache", cache_root, "--out", runs, *PROBE)
        (run,) = runs.iterdir()
        assert json.loads((run / "summary.json").read_text())["folds"]
        report = tmp_path / f"report-{protocol}"
        run_cli("report", runs, "--out", report, "--cache", cache_root)
        table = pd.read_csv(report / "table2.csv")
        assert table["Protocol"].notna().all()
        protocols = pd.read_csv(report / "protocols.csv").to_string()
        assert ("stride" if protocol == "mae-dfer" else "segment") in protocols
        assert np.isfinite(table.filter(like="UAR").select_dtypes("number").to_numpy()).any()
