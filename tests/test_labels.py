"""vjfer.labels: one vocabulary, each dataset's class order, name <-> index, cross-dataset maps."""

from __future__ import annotations

import pytest

from vjfer import labels
from vjfer.errors import ConfigError

RAVDESS_ORDER = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
CREMA_D_ORDER = ("neutral", "happy", "sad", "angry", "fearful", "disgust")


def test_class_orders_are_fixed():
    assert labels.DATASETS == ("ravdess", "crema-d", "dfew", "ferv39k", "mafw")
    assert labels.VOCABULARY[:8] == RAVDESS_ORDER
    assert labels.class_names("ravdess") == RAVDESS_ORDER
    assert labels.class_names("crema-d") == CREMA_D_ORDER
    assert labels.num_classes("ravdess") == 8
    assert labels.num_classes("crema-d") == 6


@pytest.mark.parametrize("code", range(1, 9))
def test_ravdess_class_index_is_emotion_code_minus_one(code):
    name = RAVDESS_ORDER[code - 1]
    assert labels.class_index("ravdess", name) == code - 1
    assert labels.class_name("ravdess", code - 1) == name


@pytest.mark.parametrize("dataset", labels.DATASETS)
def test_name_index_round_trip(dataset):
    for i, name in enumerate(labels.class_names(dataset)):
        assert labels.class_index(dataset, name) == i
        assert labels.class_name(dataset, i) == name


def test_the_field_datasets_keep_their_releases_order():
    """DFEW's label k is class k-1; FERV39k as both public loaders; MAFW as MAE-DFER."""
    seven = ("happy", "sad", "neutral", "angry", "surprised", "disgust", "fearful")
    assert labels.class_names("dfew") == labels.class_names("ferv39k") == seven
    assert labels.class_names("mafw")[:4] == ("angry", "disgust", "fearful", "happy")
    assert labels.num_classes("mafw") == 11
    assert labels.vocabulary_name("Happiness") == "happy" and labels.vocabulary_name("x") is None


def test_the_lab_datasets_order_classes_by_the_vocabulary():
    for dataset in ("ravdess", "crema-d"):
        positions = [labels.VOCABULARY.index(n) for n in labels.class_names(dataset)]
        assert positions == sorted(positions)


def test_crema_d_codes_cover_each_class_once():
    assert sorted(labels.CREMA_D_CODES.values()) == sorted(CREMA_D_ORDER)
    assert set(labels.CREMA_D_CODES) == {"NEU", "HAP", "SAD", "ANG", "FEA", "DIS"}
    assert labels.CREMA_D_CODES["FEA"] == "fearful"
    assert labels.CREMA_D_CODES["DIS"] == "disgust"


@pytest.mark.parametrize(
    "spelling, canonical",
    [
        ("ravdess", "ravdess"),
        ("RAVDESS", "ravdess"),
        ("crema-d", "crema-d"),
        ("crema_d", "crema-d"),
        ("CREMA-D", "crema-d"),
        ("cremad", "crema-d"),
    ],
)
def test_check_dataset_accepts_spellings(spelling, canonical):
    assert labels.check_dataset(spelling) == canonical
    assert labels.class_names(spelling) == labels.CLASSES[canonical]


def test_unknown_dataset_is_named():
    with pytest.raises(ConfigError, match="unknown dataset 'affectnet'; known: ravdess, crema-d"):
        labels.check_dataset("affectnet")


def test_unknown_class_lists_the_classes():
    with pytest.raises(ConfigError, match="crema-d has no class 'calm'; its classes: neutral"):
        labels.class_index("crema-d", "calm")


def cross_dataset_map(source: str, target: str) -> dict[int, int]:
    """Source class index -> target class index, for the classes the two datasets share by name.

    Classes of `source` absent from `target` (RAVDESS calm and surprised, for target CREMA-D) are
    absent from the map; the cross-dataset evaluation decides whether to drop or merge them.
    """
    src, dst = labels.class_names(source), labels.class_names(target)
    return {i: dst.index(name) for i, name in enumerate(src) if name in dst}


def test_cross_dataset_maps_match_by_name():
    assert cross_dataset_map("ravdess", "crema-d") == {0: 0, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5}
    assert cross_dataset_map("crema-d", "ravdess") == {0: 0, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6}
    for dataset in labels.DATASETS:
        n = labels.num_classes(dataset)
        assert cross_dataset_map(dataset, dataset) == {i: i for i in range(n)}


def test_cross_dataset_map_drops_calm_and_surprised():
    mapped = cross_dataset_map("ravdess", "crema-d")
    assert labels.class_index("ravdess", "calm") not in mapped
    assert labels.class_index("ravdess", "surprised") not in mapped


def test_every_dataset_adapter_is_a_dataset_name_and_shares_its_aliases():
    from vjfer.datasets import ADAPTERS, adapter_name
    from vjfer.labels import DATASETS, LIST, check_dataset

    assert tuple(ADAPTERS) == (*DATASETS, LIST)
    for spelling in ("crema_d", "CremaD", "FERV-39k", "ferv39k", "list"):
        assert adapter_name(spelling) == check_dataset(spelling)
