"""Emotion vocabulary, each dataset's class order, and cross-dataset matching.

One vocabulary orders every dataset's classes, so the same emotion has the same name everywhere and
RAVDESS class indices equal its emotion code minus one. CREMA-D's six classes follow the same order
(the reference code built its order from Python set iteration, which is not reproducible).
"""

from __future__ import annotations

from typing import Literal, cast

from vjfer.errors import ConfigError

DatasetName = Literal["ravdess", "crema-d", "dfew", "ferv39k", "mafw", "list"]
DATASETS: tuple[str, ...] = ("ravdess", "crema-d", "dfew", "ferv39k", "mafw")  # fixed classes
LIST = "list"  # a dataset from a list file: its classes are the file's, recorded in its cache

VOCABULARY: tuple[str, ...] = (
    *("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
    *("contempt", "anxiety", "helplessness", "disappointment"),  # MAFW's four besides those
)

# Each dataset's class order is its own release's (so label index = the release's code where it
# has one); the names are the vocabulary's, so cross-dataset evaluation matches them by name.
CLASSES: dict[str, tuple[str, ...]] = {
    "ravdess": VOCABULARY[:8],  # index = RAVDESS emotion code EE - 1
    "crema-d": tuple(e for e in VOCABULARY[:8] if e not in ("calm", "surprised")),
    # DFEW label 1..7 (EmoLabel_DataSplit), index = label - 1; FERV39k in both public loaders' order
    "dfew": ("happy", "sad", "neutral", "angry", "surprised", "disgust", "fearful"),
    "ferv39k": ("happy", "sad", "neutral", "angry", "surprised", "disgust", "fearful"),
    # MAFW in MAE-DFER's order (DFER-CLIP orders them otherwise: the cache keeps names, not codes)
    "mafw": (
        *("angry", "disgust", "fearful", "happy", "neutral", "sad", "surprised"),
        *VOCABULARY[8:],  # contempt, anxiety, helplessness, disappointment
    ),
}

# The releases' own label words, by vocabulary name (DFEW's 1..7 are mapped in its adapter).
RELEASE_NAMES: dict[str, str] = {name: name for name in VOCABULARY} | {
    "happiness": "happy",
    "sadness": "sad",
    "anger": "angry",
    "surprise": "surprised",
    "fear": "fearful",
}

# CREMA-D's three-letter emotion codes, by vocabulary name.
CREMA_D_CODES: dict[str, str] = {
    "NEU": "neutral",
    "HAP": "happy",
    "SAD": "sad",
    "ANG": "angry",
    "FEA": "fearful",
    "DIS": "disgust",
}


def check_dataset(dataset: str) -> DatasetName:
    """Return the canonical dataset name; accept `crema_d`/`cremad` spellings; raise on others."""
    name = dataset.lower().replace("_", "-")
    if name == "cremad":
        name = "crema-d"
    if name == "ferv-39k":
        name = "ferv39k"
    if name not in (*DATASETS, LIST):
        raise ConfigError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}, {LIST}")
    return cast(DatasetName, name)


def class_names(dataset: str) -> tuple[str, ...]:
    """The dataset's class names in class-index order (a list file's: ConfigError, they are the
    file's own and travel with its cache and runs)."""
    name = check_dataset(dataset)
    if name == LIST:
        raise ConfigError(
            "a list-file dataset's classes are its list file's: read them from its "
            "cache (`class_names` in manifest.json) or run (summary.json)"
        )
    return CLASSES[name]


def vocabulary_name(word: str) -> str | None:
    """The vocabulary name of a release's label word (`Happiness`, `anger`, `Surprise`), or None."""
    return RELEASE_NAMES.get(word.strip().lower())


def num_classes(dataset: str) -> int:
    return len(class_names(dataset))


def class_index(dataset: str, name: str) -> int:
    """Class index of emotion `name` in `dataset`; raises for a name the dataset does not have."""
    names = class_names(dataset)
    if name not in names:
        raise ConfigError(f"{dataset} has no class {name!r}; its classes: {', '.join(names)}")
    return names.index(name)


def class_name(dataset: str, index: int) -> str:
    return class_names(dataset)[index]
