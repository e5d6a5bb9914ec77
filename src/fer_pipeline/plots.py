"""Figures: training curves, confusion matrices, face grids, per-class F1.

Each builder returns a matplotlib figure; ``publish`` saves it atomically (a DVC output) and, when
an MLflow run is active, logs it to the run with ``mlflow.log_figure`` under ``figures/``."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .fsutil import atomic_path  # noqa: E402
from .labels import LABELS  # noqa: E402


def publish(fig, path) -> None:
    """Save ``fig`` to ``path`` (atomically) and log it to the active MLflow run, if any, as
    ``figures/<file name>``; the figure is closed."""
    from pathlib import Path

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=90, format="png", bbox_inches="tight")
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.log_figure(fig, f"figures/{Path(path).name}", save_kwargs={"dpi": 90, "bbox_inches": "tight"})
    finally:
        plt.close(fig)


def curves(history: dict[str, list[float]]):
    """Loss and accuracy per epoch, train vs val."""
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, history[key], label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label=f"val {key}")
        ax.set_xlabel("epoch"), ax.set_title(key), ax.grid(alpha=0.3), ax.legend()
    if "val_accuracy" in history:
        best = int(np.argmax(history["val_accuracy"]))
        axes[1].axvline(best + 1, color="gray", ls=":", label="best val")
        axes[1].annotate(f"{history['val_accuracy'][best]:.3f}", (best + 1, history["val_accuracy"][best]))
    return fig


def image_rows(columns: list[np.ndarray], titles: list[str], title: str):
    """A grid of 0-255 images (n, h, w, 1): one column per array, one row per image."""
    n = len(columns[0])
    fig, axes = plt.subplots(n, len(columns), figsize=(1.4 * len(columns), 1.4 * n))
    axes = np.atleast_2d(axes).reshape(n, len(columns))
    for c, (images, head) in enumerate(zip(columns, titles)):
        for r in range(n):
            ax = axes[r, c]
            ax.imshow(np.clip(images[r, ..., 0], 0, 255), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(head, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def confusion(cm: np.ndarray, title: str):
    """Counts (left) and row-normalised (right); rows = true label, columns = predicted."""
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, mat, fmt, sub in ((axes[0], cm, "d", "counts"), (axes[1], norm, ".2f", "row-normalised")):
        ax.imshow(mat, cmap="Blues")
        ax.set_xticks(range(len(LABELS)), LABELS, rotation=45, ha="right")
        ax.set_yticks(range(len(LABELS)), LABELS)
        ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(f"{title} ({sub})")
        hi = mat.max() if mat.size else 1
        for i in range(mat.shape[0]):
            for j in range(mat.shape[1]):
                ax.text(j, i, format(mat[i, j], fmt), ha="center", va="center", fontsize=8,
                        color="white" if mat[i, j] > hi / 2 else "black")
    return fig


def face_grid(x: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray, title: str,
              cols: int = 8):
    n = len(x)
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 2.0 * rows))
    for k, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(x[k].squeeze(), cmap="gray", vmin=0, vmax=255)
        ok = y_true[k] == y_pred[k]
        ax.set_title(f"T:{LABELS[y_true[k]]}\nP:{LABELS[y_pred[k]]} {probs[k]:.2f}", fontsize=7,
                     color="green" if ok else "red")
    fig.suptitle(title)
    return fig


def f1_bars(f1: dict[str, float], title: str):
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(f1)
    ax.bar(names, [f1[n] for n in names], color="tab:blue")
    for i, n in enumerate(names):
        ax.text(i, f1[n] + 0.01, f"{f1[n]:.2f}", ha="center", fontsize=8)
    ax.set_ylim(0, 1), ax.set_ylabel("F1"), ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    return fig


def reliability(bins: list[dict], bins_scaled: list[dict], temperature: float, title: str):
    """Reliability diagram: per confidence bin, the share predicted right against the mean top
    probability (the diagonal is perfect calibration), as the model gives them and at temperature
    ``temperature``; below, how many faces fall in each bin."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6, 6.5), height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="perfectly calibrated")
    for rows, label, style in ((bins, "the model", "o-"), (bins_scaled, f"at temperature {temperature:.2f}", "s--")):
        ax.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], style, markersize=4, label=label)
    ax.set_ylabel("share predicted right"), ax.set_ylim(0, 1), ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    width = bins[0]["high"] - bins[0]["low"] if bins else 0.1
    hist.bar([r["low"] for r in bins], [r["faces"] for r in bins], width=width, align="edge",
             color="tab:blue", edgecolor="white")
    hist.set_xlabel("top probability (confidence)"), hist.set_ylabel("faces"), hist.set_xlim(0, 1)
    fig.tight_layout()
    return fig


def timeline(times: dict[int, np.ndarray], probs: dict[int, np.ndarray], title: str):
    """Each face track's emotions over a video: a stacked area of its (smoothed) probabilities per
    emotion against time in seconds, one panel per track."""
    tracks = sorted(times)
    fig, axes = plt.subplots(max(1, len(tracks)), 1, figsize=(9, 1.9 * max(1, len(tracks)) + 0.6), squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for ax, t in zip(axes[:, 0], tracks):
        ax.stackplot(times[t], probs[t].T, labels=LABELS, colors=colours[:len(LABELS)], alpha=0.85)
        ax.set_ylim(0, 1), ax.set_ylabel(f"face {t}"), ax.margins(x=0)
    if not tracks:
        axes[0, 0].text(0.5, 0.5, "no face found", ha="center", va="center", transform=axes[0, 0].transAxes)
    axes[-1, 0].set_xlabel("seconds")
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.suptitle(title)
    return fig
