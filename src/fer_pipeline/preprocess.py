"""Preprocess: ingest outputs -> cleaned train / val / test arrays (uint8), class weights, preview."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .fsutil import atomic_path
from .labels import LABELS, NUM_CLASSES, SPLITS


def clean(manifest: pd.DataFrame, cfg: dict) -> tuple[pd.DataFrame, dict]:
    """Rows to keep, and how many were dropped for which reason. Only train rows are dropped:
    val and test stay exactly the official PublicTest / PrivateTest sets."""
    train = manifest["split"] == "train"
    drop = pd.Series(False, index=manifest.index)
    dropped: dict[str, int] = {}
    if cfg.get("drop_cross_split_duplicates"):
        held_out = set(manifest.loc[~train, "pixel_hash"])
        mask = train & manifest["pixel_hash"].isin(held_out)
        dropped["train_duplicates_of_val_or_test"] = int(mask.sum())
        drop |= mask
    if cfg.get("drop_train_duplicates"):
        mask = train & manifest.duplicated(["split", "pixel_hash"], keep="first") & ~drop
        dropped["train_exact_duplicates"] = int(mask.sum())
        drop |= mask
    if cfg.get("drop_near_blank"):
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
    """One ``<split>.npz`` per split with ``x`` (n, 48, 48, 1) uint8, ``y`` int64, ``row_id``."""
    sizes = {}
    for split in SPLITS:
        sub = manifest[manifest["split"] == split]
        idx = sub["row_id"].to_numpy()
        with atomic_path(Path(out_dir) / f"{split}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, x=images[idx][..., None], y=sub["label"].to_numpy(np.int64), row_id=idx)
        sizes[split] = int(len(sub))
    return sizes


def load_split(data_dir: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    from .errors import DataError

    path = Path(data_dir) / f"{split}.npz"
    if not path.exists():
        raise DataError(f"{path} not found: run the preprocess stage first (`dvc repro preprocess`)")
    with np.load(path) as z:
        return z["x"], z["y"]


def preview_augmentation(x: np.ndarray, aug_params: dict, path: str, n: int = 8, seed: int = 0) -> None:
    """A grid: each row one training face, original then five augmented versions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import tensorflow as tf

    from .augment import AugmentConfig, augment_batch

    cfg = AugmentConfig.from_params(aug_params)
    rng = np.random.default_rng(seed)
    faces = x[rng.choice(len(x), size=min(n, len(x)), replace=False)].astype(np.float32)
    versions = 5
    fig, axes = plt.subplots(len(faces), versions + 1, figsize=(1.4 * (versions + 1), 1.4 * len(faces)))
    axes = np.atleast_2d(axes)
    for v in range(versions + 1):
        out = faces if v == 0 else augment_batch(tf.constant(faces), cfg, tf.constant([seed, v])).numpy()
        for r in range(len(faces)):
            ax = axes[r, v]
            ax.imshow(np.clip(out[r, ..., 0], 0, 255), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title("original" if v == 0 else f"aug {v}", fontsize=8)
    fig.suptitle("Training augmentation preview", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)


def run_preprocess(images: np.ndarray, manifest: pd.DataFrame, cfg: dict, aug_params: dict,
                   out_dir: str, preview_path: str) -> dict:
    kept, dropped = clean(manifest, cfg)
    sizes = save_splits(images, kept, out_dir)
    train_labels = kept.loc[kept["split"] == "train", "label"].to_numpy(np.int64)
    weights = class_weights(train_labels, cfg.get("class_weights", "none"))
    train_idx = kept.loc[kept["split"] == "train", "row_id"].to_numpy()
    preview_augmentation(images[train_idx][..., None], aug_params, preview_path,
                         n=cfg.get("preview_samples", 8))
    return {
        "rows": sizes,
        "dropped": dropped,
        "dropped_total": int(sum(dropped.values())),
        "class_weights": dict(zip(LABELS, weights)),
    }
