"""The one canonical label order, and the mapping of every input form onto it by name.

Canonical order is the Kaggle folder order (alphabetical). The original ``fer2013.csv``
numbers the same classes differently; its ids are mapped here by *name*, never by position.
"""

from __future__ import annotations

LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
NUM_CLASSES = len(LABELS)
LABEL_TO_ID: dict[str, int] = {name: i for i, name in enumerate(LABELS)}

# Class numbering of the original ICML 2013 CSV release (column ``emotion``).
CSV_ID_TO_NAME: dict[int, str] = {
    0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral",
}

# Split names: original usage -> canonical split.
USAGE_TO_SPLIT: dict[str, str] = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SPLITS: tuple[str, ...] = ("train", "val", "test")


def label_id(name: str) -> int:
    """Canonical id of a class name (case-insensitive); raises ValueError naming the allowed ones."""
    key = name.strip().lower()
    if key not in LABEL_TO_ID:
        raise ValueError(f"unknown class {name!r}; allowed: {', '.join(LABELS)}")
    return LABEL_TO_ID[key]


def csv_id_to_label_id(csv_id: int) -> int:
    """Canonical id for a class number of the original fer2013.csv."""
    if csv_id not in CSV_ID_TO_NAME:
        raise ValueError(f"CSV emotion {csv_id} outside 0-6")
    return LABEL_TO_ID[CSV_ID_TO_NAME[csv_id]]

# FER+ (Barsoum et al. 2016, arXiv 1608.01041): 10 crowd taggers voted on every FER2013 image.
# Vote columns in the order of FER+'s fer2013new.csv; the first seven are FER2013's emotions under
# other names. Contempt, unknown and NF (not a face) have no FER2013 class.
FERPLUS_COLUMNS: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                                    "contempt", "unknown", "NF")
FERPLUS_TO_LABEL: dict[str, str] = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise",
                                    "sadness": "sad", "anger": "angry", "disgust": "disgust", "fear": "fear"}
# Training targets (params: train.labels).
TARGETS: tuple[str, ...] = ("fer2013", "ferplus_majority", "ferplus_soft", "fused")
