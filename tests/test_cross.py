"""Cross-dataset evaluation: class handling by hand-computed examples, then an end-to-end run."""

from __future__ import annotations

import json
import re
import shutil

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_tiny_cache

from vjfer import metrics
from vjfer.cache import VideoEntry, build_cache, open_cache
from vjfer.cross import (
    apply_handling,
    class_handling,
    cross_evaluate,
    score_handled,
)
from vjfer.datasets.folds import load_folds
from vjfer.errors import CacheError, CheckpointError, ConfigError
from vjfer.labels import VOCABULARY, class_names
from vjfer.probe.config import TrainConfig
from vjfer.probe.run import train_folds
from vjfer.report import build_report
from vjfer.runs import find_probe_run, find_target_cache

# Class indices. RAVDESS: neutral calm happy sad angry fearful disgust surprised.
# CREMA-D: neutral happy sad angry fearful disgust. Evaluation classes = CREMA-D's, in order.
R_NEU, R_CALM, R_HAP, R_SAD, R_ANG, R_FEA, R_DIS, R_SUR = range(8)
C_NEU, C_HAP, C_SAD, C_ANG, C_FEA, C_DIS = range(6)


def handle_confusion(matrix: np.ndarray, handling) -> tuple[np.ndarray, int]:
    """A cross confusion matrix [C_target, C_source] (rows = target labels, columns = source
    predictions) -> (evaluation confusion [E, E], videos dropped)."""
    m = np.asarray(matrix, dtype=np.int64)
    expect = (len(handling.label_map), len(handling.pred_map))
    if m.shape != expect:
        raise ValueError(f"confusion must be [C_target, C_source] = {expect}; got {m.shape}")
    E = len(handling.names)
    out = np.zeros((E, E), dtype=np.int64)
    for i, ei in enumerate(handling.label_map):
        for j, ej in enumerate(handling.pred_map):
            if ei >= 0 and ej >= 0:
                out[ei, ej] += m[i, j]
    return out, int(m.sum() - out.sum())


def test_class_maps_follow_design():
    r2c = class_handling("ravdess", "crema-d", "drop")
    assert r2c.names == ("neutral", "happy", "sad", "angry", "fearful", "disgust")
    assert r2c.label_map.tolist() == [0, 1, 2, 3, 4, 5]  # CREMA-D labels all kept
    assert r2c.pred_map.tolist() == [0, -1, 1, 2, 3, 4, 5, -1]  # calm, surprised predictions drop
    merged = class_handling("ravdess", "crema-d", "merge")
    assert merged.pred_map.tolist() == [0, 0, 1, 2, 3, 4, 5, -1]  # calm -> neutral
    c2r = class_handling("cremad", "ravdess", "drop")
    assert c2r.label_map.tolist() == [0, -1, 1, 2, 3, 4, 5, -1]  # calm, surprised labels drop
    assert c2r.pred_map.tolist() == [0, 1, 2, 3, 4, 5]
    assert class_handling("crema-d", "ravdess", "merge").label_map.tolist() == [
        0,
        0,
        1,
        2,
        3,
        4,
        5,
        -1,
    ]


@pytest.mark.parametrize(
    ("source", "target", "calm", "match"),
    [
        ("ravdess", "ravdess", "drop", "two datasets"),
        ("ravdess", "crema-d", "keep", "calm handling"),
        ("ravdess", "afew", "drop", "unknown dataset"),
    ],
)
def test_class_handling_rejects(source, target, calm, match):
    with pytest.raises(ConfigError, match=match):
        class_handling(source, target, calm)


# RAVDESS probes on CREMA-D videos: truth in CREMA-D classes, predictions in RAVDESS classes.
R2C_TRUTH = [C_NEU, C_NEU, C_NEU, C_HAP, C_HAP, C_SAD, C_ANG, C_FEA, C_DIS, C_DIS]
R2C_PRED = [R_NEU, R_CALM, R_SUR, R_HAP, R_SAD, R_SAD, R_ANG, R_FEA, R_DIS, R_CALM]
# CREMA-D probes on RAVDESS videos: truth in RAVDESS classes, predictions in CREMA-D classes.
C2R_TRUTH = [R_NEU, R_CALM, R_CALM, R_SUR, R_HAP, R_SAD, R_ANG, R_FEA, R_DIS, R_DIS]
C2R_PRED = [C_NEU, C_NEU, C_ANG, C_HAP, C_HAP, C_SAD, C_ANG, C_FEA, C_DIS, C_NEU]

CASES = {
    # drop: videos 1, 9 (predicted calm) and 2 (predicted surprised) go; one happy video is
    # called sad. Recall: happy 1/2, the rest 1. Precision: sad 1/2 (one of two), the rest 1.
    ("ravdess", "crema-d", "drop"): dict(
        truth=R2C_TRUTH,
        pred=R2C_PRED,
        kept=7,
        dropped={"predicted calm": 2, "predicted surprised": 1},
        uar=(5 + 1 / 2) / 6,
        war=6 / 7,
        macro_precision=(5 + 1 / 2) / 6,
    ),
    # merge: video 1 (neutral, predicted calm) becomes right, video 9 (disgust, predicted calm)
    # becomes a neutral prediction. Recall: happy 1/2, disgust 1/2. Precision: neutral 2/3, sad 1/2.
    ("ravdess", "crema-d", "merge"): dict(
        truth=R2C_TRUTH,
        pred=R2C_PRED,
        kept=9,
        dropped={"predicted surprised": 1},
        uar=(4 + 1 / 2 + 1 / 2) / 6,
        war=7 / 9,
        macro_precision=(4 + 2 / 3 + 1 / 2) / 6,
    ),
    # drop: labelled calm (1, 2) and surprised (3) go; one disgust video is called neutral.
    ("crema-d", "ravdess", "drop"): dict(
        truth=C2R_TRUTH,
        pred=C2R_PRED,
        kept=7,
        dropped={"labelled calm": 2, "labelled surprised": 1},
        uar=(5 + 1 / 2) / 6,
        war=6 / 7,
        macro_precision=(5 + 1 / 2) / 6,
    ),
    # merge: calm labels count as neutral: video 1 right, video 2 (called angry) wrong.
    # Recall: neutral 2/3, disgust 1/2. Precision: neutral 2/3, angry 1/2.
    ("crema-d", "ravdess", "merge"): dict(
        truth=C2R_TRUTH,
        pred=C2R_PRED,
        kept=9,
        dropped={"labelled surprised": 1},
        uar=(4 + 2 / 3 + 1 / 2) / 6,
        war=7 / 9,
        macro_precision=(4 + 2 / 3 + 1 / 2) / 6,
    ),
}


@pytest.mark.parametrize("key", list(CASES), ids=["-".join(k) for k in CASES])
def test_known_predictions_through_handling(key):
    case = CASES[key]
    handling = class_handling(*key)
    handled = apply_handling(case["truth"], case["pred"], handling)
    assert handled.n_total == 10 and handled.n_kept == case["kept"]
    assert handled.n_kept + handled.n_dropped == handled.n_total
    assert handled.dropped == case["dropped"]
    assert sum(handled.dropped.values()) == handled.n_dropped
    scores = score_handled(handled, handling)
    for name in ("uar", "war", "macro_precision"):
        assert scores[name] == pytest.approx(case[name], abs=1e-12), name
    assert scores["n_kept"] + scores["n_dropped"] == scores["n_total"] == 10
    assert np.sum(scores["confusion"]) == case["kept"]


def _arrays(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expand a confusion matrix of counts into (truth, pred) arrays."""
    rows, cols = np.nonzero(confusion)
    counts = confusion[rows, cols]
    return np.repeat(rows, counts), np.repeat(cols, counts)


# RAVDESS probes on CREMA-D: rows CREMA-D labels, columns RAVDESS predictions (72 videos).
R2C_CONFUSION = np.array(
    [
        # neu calm hap sad ang fea dis sur
        [10, 5, 0, 2, 0, 0, 0, 3],  # neutral
        [1, 0, 8, 0, 0, 0, 1, 0],  # happy
        [2, 4, 0, 6, 0, 0, 0, 0],  # sad
        [0, 0, 0, 0, 9, 1, 0, 0],  # angry
        [0, 0, 0, 1, 0, 7, 0, 2],  # fearful
        [0, 1, 0, 0, 2, 0, 7, 0],  # disgust
    ]
)


def test_known_confusion_drop_and_merge():
    drop = class_handling("ravdess", "crema-d", "drop")
    cm, dropped = handle_confusion(R2C_CONFUSION, drop)
    # calm column (10 videos) and surprised column (5) go.
    assert dropped == 15 and cm.sum() == 72 - 15
    assert cm[0].tolist() == [10, 0, 2, 0, 0, 0] and cm[:, 0].tolist() == [10, 1, 2, 0, 0, 0]
    truth, pred = _arrays(cm)
    assert metrics.uar(truth, pred) == pytest.approx(
        (10 / 12 + 8 / 10 + 6 / 8 + 9 / 10 + 7 / 8 + 7 / 9) / 6
    )
    assert metrics.war(truth, pred) == pytest.approx(47 / 57)
    assert metrics.macro_precision(truth, pred) == pytest.approx(
        (10 / 13 + 8 / 8 + 6 / 9 + 9 / 11 + 7 / 8 + 7 / 8) / 6
    )

    merge = class_handling("ravdess", "crema-d", "merge")
    cm, dropped = handle_confusion(R2C_CONFUSION, merge)
    assert dropped == 5 and cm.sum() == 67  # only surprised predictions go
    assert cm[:, 0].tolist() == [15, 1, 6, 0, 0, 1]  # calm column added to neutral
    truth, pred = _arrays(cm)
    assert metrics.uar(truth, pred) == pytest.approx(
        (15 / 17 + 8 / 10 + 6 / 12 + 9 / 10 + 7 / 8 + 7 / 10) / 6
    )
    assert metrics.war(truth, pred) == pytest.approx(52 / 67)
    assert metrics.macro_precision(truth, pred) == pytest.approx(
        (15 / 23 + 8 / 8 + 6 / 9 + 9 / 11 + 7 / 8 + 7 / 8) / 6
    )


def test_confusion_agrees_with_arrays_both_directions():
    rng = np.random.default_rng(0)
    for source, target in (("ravdess", "crema-d"), ("crema-d", "ravdess")):
        for calm in ("drop", "merge"):
            handling = class_handling(source, target, calm)
            T, S = len(handling.label_map), len(handling.pred_map)
            truth, pred = rng.integers(0, T, 200), rng.integers(0, S, 200)
            raw = np.zeros((T, S), dtype=np.int64)
            np.add.at(raw, (truth, pred), 1)
            cm, dropped = handle_confusion(raw, handling)
            handled = apply_handling(truth, pred, handling)
            assert dropped == handled.n_dropped
            assert cm.tolist() == score_handled(handled, handling)["confusion"]


def test_nothing_kept_scores_none():
    handling = class_handling("ravdess", "crema-d", "drop")
    handled = apply_handling([C_NEU, C_SAD], [R_CALM, R_SUR], handling)
    scores = score_handled(handled, handling)
    assert scores["uar"] is None and scores["n_kept"] == 0 and scores["n_dropped"] == 2


# ---------------------------------------------------------------------------------------------
# End to end: small caches of both datasets, probes trained from them, cross runs, the report.

D, GRID = 32, (2, 2, 2)  # N = 8 tokens per clip
ENCODER = {
    "encoder": "synthetic",
    "encoder_fingerprint": {"name": "synthetic", "checkpoint_sha256": None},
    "resolution": 64,
    "frames": 16,
    "frame_step": 4,
    "mean": [0.5] * 3,
    "std": [0.2] * 3,
    "dtype": "float16",
}
SMALL = TrainConfig(epochs=2, batch_size=4, num_heads=4, num_workers=0, device="cpu")


def make_entries(dataset: str, actors_per_fold: int, seed: int) -> list[VideoEntry]:
    """One video per actor and class; tokens carry the emotion (by name, so it transfers)."""
    rng = np.random.default_rng(seed)
    prototypes = np.random.default_rng(99).normal(size=(len(VOCABULARY), D)) * 1.5
    folds = load_folds(dataset)
    actors = [
        a
        for k in range(1, 6)
        for a in sorted(a for a, f in folds.items() if f == k)[:actors_per_fold]
    ]
    entries = []
    for actor in actors:
        shift = rng.normal(size=D) * 0.5
        for label, name in enumerate(class_names(dataset)):
            C = int(rng.integers(1, 4))
            tokens = rng.normal(size=(C, 1, 8, D)) + prototypes[VOCABULARY.index(name)] + shift
            frames = np.arange(C * 16).reshape(C, 16)
            entries.append(
                VideoEntry(
                    f"{dataset}-{actor}-{name}",
                    label,
                    actor,
                    folds[actor],
                    n_frames=C * 16,
                    fps=30.0,
                    frames=frames,
                    tokens=tokens.astype(np.float16),
                )
            )
    return entries


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{dataset: (cache path, probe run dir)} and the runs root."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny shapes run fastest on one thread
    root, caches = tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("caches")
    out = {}
    for seed, (dataset, per_fold) in enumerate((("ravdess", 2), ("crema-d", 2))):
        settings = {**ENCODER, "dataset": dataset, "plan": "windows", "hop": 8, "views": "center"}
        entries = make_entries(dataset, per_fold, seed)
        cache = write_tiny_cache(
            caches / dataset, entries=entries, settings=settings, dataset=dataset
        )
        run_dir = root / f"{dataset}-attentive"
        train_folds(open_cache(cache), [1, 2, 3, 4, 5], SMALL, run_dir, progress=False)
        out[dataset] = (cache, run_dir)
    yield out, root
    torch.set_num_threads(threads)


DIRECTIONS = [
    (s, t, c)
    for s, t in (("ravdess", "crema-d"), ("crema-d", "ravdess"))
    for c in ("drop", "merge")
]


@pytest.fixture(scope="module")
def crosses(runs):
    """Every direction and calm handling, run once: {(source, target, calm): CrossResult}."""
    paths, _ = runs
    return {
        (s, t, c): cross_evaluate(paths[s][1], paths[t][0], c, device="cpu")
        for s, t, c in DIRECTIONS
    }


@pytest.mark.parametrize("key", DIRECTIONS, ids=["-".join(k) for k in DIRECTIONS])
def test_cross_evaluate_end_to_end(runs, crosses, key):
    (paths, _), (source, target, calm) = runs, key
    result = crosses[key]
    # inside its probe run: two runs' cross results never share a folder
    assert result.out_dir == paths[source][1] / "cross" / f"cross-{source}-to-{target}-{calm}"
    assert not list(result.out_dir.parent.glob("*.partial"))
    assert [f["fold"] for f in result.folds] == [1, 2, 3, 4, 5]
    n_target = len(open_cache(paths[target][0]).videos)
    assert result.n_videos == n_target
    for fold in result.folds:
        predictions = pd.read_csv(result.out_dir / f"fold-{fold['fold']}" / "video_predictions.csv")
        assert len(predictions) == n_target
        for voting in ("pbv", "mv"):
            s = fold[voting]
            assert s["n_kept"] + s["n_dropped"] == s["n_total"] == n_target
            assert sum(s["dropped"].values()) == s["n_dropped"]
            assert predictions[f"{voting}_kept"].sum() == s["n_kept"]
            assert np.sum(s["confusion"]) == s["n_kept"]
            if (
                source == "crema-d"
            ):  # label side: exactly the calm/surprised videos (merge: surprised)
                dropped = {"drop": ("calm", "surprised"), "merge": ("surprised",)}[calm]
                assert s["n_dropped"] == predictions["label_name"].isin(dropped).sum()
    summary = json.loads((result.out_dir / "summary.json").read_text())
    assert summary["kind"] == "cross" and summary["mean"]["pbv"]["uar"]["n"] == 5
    assert summary["mean"]["pbv"]["war"]["mean"] > 1 / 6 + 0.2  # the emotion transfers by name
    assert "| Voting |" in (result.out_dir / "summary.md").read_text()


def test_cross_refuses_another_encoder(runs, tmp_path):
    (paths, _) = runs
    other = {
        **ENCODER,
        "encoder_fingerprint": {"name": "synthetic", "checkpoint_sha256": "ab12"},
        "dataset": "crema-d",
        "plan": "windows",
        "hop": 8,
        "views": "center",
    }
    cache = build_cache(
        tmp_path / "other", other, make_entries("crema-d", 1, 5), dataset="crema-d", grid=GRID
    )
    with pytest.raises(CacheError, match="encoder_fingerprint.checkpoint_sha256"):
        cross_evaluate(paths["ravdess"][1], cache, "drop", device="cpu")
    with pytest.raises(CheckpointError, match="no fold-K/probe.pt"):
        cross_evaluate(tmp_path, paths["crema-d"][0], "drop", device="cpu")


def test_two_runs_keep_their_cross_results_apart_and_report_pairs_each_with_its_own(
    runs, crosses, tmp_path
):
    paths, _ = runs
    first = paths["ravdess"][1]
    second = shutil.copytree(
        first, tmp_path / "runs" / "ravdess-second", ignore=shutil.ignore_patterns("cross")
    )
    result = cross_evaluate(second, paths["crema-d"][0], "drop", device="cpu")
    mine = crosses[("ravdess", "crema-d", "drop")]
    assert result.out_dir.parent.parent == second and mine.out_dir.parent.parent == first
    assert (mine.out_dir / "summary.json").is_file()  # the first run's result is still there
    with pytest.raises(
        ConfigError,
        match=re.escape(
            f"cross run {result.out_dir} comes from probe run {second.resolve()}, but the "
            f"report's ravdess run is {first}"
        ),
    ):
        build_report([first, result.out_dir], tmp_path / "report")


def test_finders_for_the_cli(runs, tmp_path):
    (paths, root) = runs
    assert find_probe_run(root, "crema_d") == paths["crema-d"][1]
    with pytest.raises(ConfigError, match="found none"):
        find_probe_run(tmp_path, "ravdess")
    both = paths["ravdess"][0].parent  # the folder holding both datasets' caches
    assert find_target_cache(both, "crema-d", paths["ravdess"][1]) == paths["crema-d"][0]
    assert find_target_cache(both, "ravdess", paths["crema-d"][1]) == paths["ravdess"][0]
    with pytest.raises(CacheError, match="found none"):
        find_target_cache(tmp_path, "ravdess", paths["crema-d"][1])


@pytest.mark.slow
def test_report_from_real_runs(runs, crosses, tmp_path):
    (paths, root) = runs
    caches = [paths["ravdess"][0], paths["crema-d"][0]]
    written = build_report([root], tmp_path / "report", caches=caches)
    names = {p.name for p in written}
    for table in ("table2", "table3", "table4"):
        assert {f"{table}.md", f"{table}.csv"} <= names
    table4 = pd.read_csv(tmp_path / "report" / "table4.csv")
    assert len(table4) == 8  # 2 directions x 2 handlings x 2 voting rules
    assert set(table4["Calm"]) == {"drop", "merge"}
    # every probe's kept predictions pooled: an interval in every row, by the target's actors
    assert table4["UAR low"].notna().all() and (table4["UAR low"] <= table4["UAR high"]).all()
    table2 = pd.read_csv(tmp_path / "report" / "table2.csv")
    assert table2["WAR low"].notna().all() and (table2["WAR low"] <= table2["WAR high"]).all()
    assert sorted(table2["Dataset"].unique()) == ["CREMA-D", "RAVDESS"]
    pngs = [p for p in written if p.suffix == ".png"]
    # confusions of probe and cross runs (PBV, MV each), then a PCA and a timeline per probe run
    assert len(pngs) == 2 * 2 + 4 * 2 + 2 + 2
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.image.imread(png).shape[0] > 300
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Nothing: every input was found." in text and "![" in text


def test_cross_votes_over_exactly_the_evaluation_windows(runs, tmp_path):
    """A `--plan reference --augment 2` target cache holds, per video, its evaluation windows, the
    reference's 8 training clips and 2 x 8 augmented copies: cross votes over the windows only."""
    from vjfer.clips import ROLE_AUGMENTED, ROLE_EVAL, clip_roles, plan_clips

    (paths, _), copies = runs, 2
    entries = []
    for e in make_entries("crema-d", 1, 5):
        n_frames = 100 + 10 * e.label  # 5 to 7 windows, then 8 training clips
        frames, roles = plan_clips(n_frames, "reference"), clip_roles(n_frames, "reference")
        train = frames[roles != ROLE_EVAL]
        frames = np.concatenate([frames, *[train] * copies])
        roles = np.concatenate(
            [roles, *[np.full(len(train), ROLE_AUGMENTED + c, np.uint8) for c in range(copies)]]
        )
        tokens = np.repeat(e.tokens[:1], len(frames), axis=0)
        entries.append(
            VideoEntry(
                e.video_id,
                e.label,
                e.actor,
                e.fold,
                n_frames,
                30.0,
                frames,
                tokens,
                clip_role=roles,
            )
        )
    settings = {
        **ENCODER,
        "dataset": "crema-d",
        "plan": "reference",
        "hop": 8,
        "views": "center",
        "augment": copies,
    }
    target = open_cache(
        build_cache(tmp_path / "t", settings, entries, dataset="crema-d", grid=GRID)
    )
    windows = {v: int((target.clip_roles(v) == ROLE_EVAL).sum()) for v in target.videos["video_id"]}
    stored = {v: len(target.clip_roles(v)) for v in windows}
    assert all(stored[v] == windows[v] + 8 * (1 + copies) for v in windows)
    run = shutil.copytree(paths["ravdess"][1], tmp_path / "run")  # the module's run stays as is
    result = cross_evaluate(run, target, "drop", device="cpu")
    for fold in result.folds:
        videos = pd.read_csv(result.out_dir / f"fold-{fold['fold']}" / "video_predictions.csv")
        voted = dict(zip(videos["video_id"], videos["n_clips"], strict=True))
        assert voted == windows
        votes = videos.filter(like="votes_").sum(axis=1)
        assert votes.tolist() == [windows[v] for v in videos["video_id"]]
    coverage = json.loads((result.out_dir / "coverage.json").read_text())
    assert coverage["total"] == len(windows) and coverage["text"] == str(target.coverage())
