"""Preprocess: ingest outputs -> cleaned train / val / test arrays (uint8) and class weights."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .data import VOTE_COLUMNS
from .fsutil import atomic_path
from .labels import LABELS, NUM_CLASSES, SPLITS


def clean(manifest: pd.DataFrame, cfg: dict) -> tuple[pd.DataFrame, dict]:
    """Rows to keep, and how many were dropped for which reason. Only train rows are dropped:
    val and test stay exactly the official PublicTest / PrivateTest sets."""
    train = manifest["split"] == "train"
    drop = pd.Series(False, index=manifest.index)
    dropped: dict[str, int] = {}
    if cfg["drop_cross_split_duplicates"]:
        held_out = set(manifest.loc[~train, "pixel_hash"])
        mask = train & manifest["pixel_hash"].isin(held_out)
        dropped["train_duplicates_of_val_or_test"] = int(mask.sum())
        drop |= mask
    if cfg["drop_train_duplicates"]:
        mask = train & manifest.duplicated(["split", "pixel_hash"], keep="first") & ~drop
        dropped["train_exact_duplicates"] = int(mask.sum())
        drop |= mask
    if cfg["drop_near_blank"]:
        mask = train & (manifest["std"] < cfg["near_blank_std"]) & ~drop
        dropped["train_near_blank"] = int(mask.sum())
        drop |= mask
    return manifest[~drop], dropped


def class_weights(labels: np.ndarray, method: str) -> list[float]:
    """Per-class loss weights: ``none`` (all 1), ``balanced`` (n / (k * n_c)) or ``sqrt`` of balanced."""
    if method in (None, "none", False):
        return [1.0] * NUM_CLASSES
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    balanced = len(labels) / (NUM_CLASSES * np.maximum(counts, 1))
    if method == "balanced":
        w = balanced
    elif method == "sqrt":
        w = np.sqrt(balanced)
    else:
        raise ValueError(f"unknown class_weights method {method!r}; use none, balanced or sqrt")
    return [round(float(v), 4) for v in w]


def save_splits(images: np.ndarray, manifest: pd.DataFrame, out_dir: str | os.PathLike) -> dict[str, int]:
    """One ``<split>.npz`` per split with ``x`` (n, 48, 48, 1) uint8, ``y`` int64 (FER2013 labels),
    ``votes`` (n, 10) int16 (FER+ votes, ``labels.FERPLUS_COLUMNS`` order), ``row_id``."""
    sizes = {}
    for split in SPLITS:
        sub = manifest[manifest["split"] == split]
        idx = sub["row_id"].to_numpy()
        with atomic_path(Path(out_dir) / f"{split}.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, x=images[idx][..., None], y=sub["label"].to_numpy(np.int64), row_id=idx,
                     votes=sub[VOTE_COLUMNS].to_numpy(np.int16))
        sizes[split] = int(len(sub))
    return sizes


def preprocess_to(images: np.ndarray, manifest: pd.DataFrame, cfg: dict, out_dir: str) -> dict:
    """``cfg``: the validated ``preprocess`` keys (cleaning, class weights)."""
    kept, dropped = clean(manifest, cfg)
    sizes = save_splits(images, kept, out_dir)
    train_labels = kept.loc[kept["split"] == "train", "label"].to_numpy(np.int64)
    weights = class_weights(train_labels, cfg["class_weights"])
    return {
        "rows": sizes,
        "dropped": dropped,
        "dropped_total": int(sum(dropped.values())),
        "class_weights": dict(zip(LABELS, weights)),
    }


def run_preprocess(params: dict, *, interim: str, processed: str, reports: str) -> dict:
    """The preprocess stage (folders: dvc.yaml's ``cmd``): clean and split -> one .npz per split and
    ``reports``/summary.json (rows, drops, class weights)."""
    from pathlib import Path

    from .data import load_arrays
    from .fsutil import write_json
    from .layout import Preprocess

    images, manifest = load_arrays(interim)
    s = preprocess_to(images, manifest, params["preprocess"], processed)
    write_json(Path(reports) / Preprocess.SUMMARY, s)
    print(f"preprocess: {s['rows']}; dropped {s['dropped']}")
    return s
