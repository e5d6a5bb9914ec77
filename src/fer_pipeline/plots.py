"""Figures: training curves, confusion matrices, face grids, per-class F1, reliability, video
timelines, the photo evaluation, the drift report and the experiments page.

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


def photo_confusion(report: dict):
    """fer evaluate-photos: each folder's photos by the class their largest face got."""
    from pathlib import Path

    c = report["confusion"]
    counts = np.array(c["counts"])
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(c["rows"]) + 2))
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center",
                        color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(c["columns"])), c["columns"], rotation=40, ha="right")
    ax.set_yticks(range(len(c["rows"])), c["rows"])
    ax.set_xlabel("predicted (largest face of the photo)")
    ax.set_ylabel("folder")
    ax.set_title(f"{Path(report['folder']).name}: {100 * report['accuracy']:.1f}% end to end, "
                 f"{report['faces_found']} of {report['images']} faces found")
    return fig


def drift(reference: dict, window, fields: dict, numeric: tuple[str, ...]):
    """fer monitor: the emotion shares and the ``numeric`` fields' distributions, validation faces
    against the service's window, each titled with its PSI (``fields``: the drift report's)."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    ref_e = np.array([reference["emotion"].count(n) for n in LABELS], float)
    cur_e = np.array([list(window["emotion"]).count(n) for n in LABELS], float)
    xs = np.arange(len(LABELS))
    axes[0].bar(xs - 0.2, ref_e / ref_e.sum(), 0.4, label="validation faces")
    axes[0].bar(xs + 0.2, cur_e / max(cur_e.sum(), 1), 0.4, label="service window")
    axes[0].set_xticks(xs, LABELS, rotation=40, ha="right")
    axes[0].legend(fontsize=8)
    for ax, f in zip(axes[1:], numeric):
        ax.hist(reference[f], bins=30, density=True, alpha=0.5, label="validation faces")
        ax.hist(window[f], bins=30, density=True, alpha=0.5, label="service window")
    for ax, f in zip(axes, ("emotion", *numeric)):
        r = fields[f]
        ax.set_title(f"{f}: PSI {r['value']:.3f}" + (" DRIFT" if r["drift"] else ""),
                     color="tab:red" if r["drift"] else "black", fontsize=10)
    fig.tight_layout()
    return fig


def experiments(rows: list[dict], budget: float):
    """Two panels: runs scored against FER2013's labels (val decides, test reported), and the FER+
    scoreboard (PrivateTest against the FER+ most-voted label; val too for runs trained on FER+)."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [3, 2]},
                                 layout="constrained")   # room for the run names between the panels
    fer = [r for r in rows if r.get("labels", "fer2013") == "fer2013"]
    points: dict[tuple, list[str]] = {}  # runs with the same compute and val share one label
    for r in fer:
        ax.scatter(r["tflop"], r["val"], color="tab:blue")
        if r["test"] is not None:
            ax.scatter(r["tflop"], r["test"], color="tab:orange", marker="s")
        points.setdefault((round(r["tflop"]), r["val"]), []).append(r["name"])
    # Most runs sit at the budget: their labels go in a column right of it, in val order, joined to
    # their points by thin lines; the others are labelled beside the point.
    near = sorted((p for p in points.items() if p[0][0] > 0.95 * budget), key=lambda p: p[0][1])
    others = [p for p in points.items() if p not in near]
    step = 0.32
    mid = sum(y for (_, y), _ in near) / max(len(near), 1)
    for k, ((x, y), names) in enumerate(near):
        ax.annotate(" = ".join(names), (x, y), xytext=(1.08 * budget, mid + step * (k - (len(near) - 1) / 2)),
                    fontsize=8, ha="left", va="center",
                    arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "gray", "shrinkB": 2})
    for (x, y), names in others:
        ax.annotate(" = ".join(names), (x, y), textcoords="offset points", fontsize=8, xytext=(-8, 4), ha="right")
    ax.scatter([], [], color="tab:blue", label="val (decides)")
    ax.scatter([], [], color="tab:orange", marker="s", label="test (reported)")
    ax.set_title("trained and scored on FER2013's labels", fontsize=10)
    ax.set_xlim(0, 1.6 * budget)
    # one row per run (names read across, however many runs), newest at the bottom
    scored = [r for r in rows if r.get("ferplus_test") is not None]
    for k, r in enumerate(scored):
        if r.get("labels", "fer2013") != "fer2013":
            bx.scatter(r["val"], k, color="tab:green")
        bx.scatter(r["ferplus_test"], k, color="tab:purple", marker="s")
        bx.annotate(f"{r['ferplus_test']:.1f}", (r["ferplus_test"], k), textcoords="offset points", xytext=(0, 5),
                    ha="center", fontsize=7)
    bx.set_yticks(range(len(scored)), [f"{r['name']} ({r.get('labels', 'fer2013')})" for r in scored], fontsize=8)
    bx.set_ylim(max(len(scored), 2) - 0.4, -0.6)
    bx.set_xlabel("accuracy against the FER+ most-voted label, %")
    bx.scatter([], [], color="tab:green", label="val (decides)")
    bx.scatter([], [], color="tab:purple", marker="s", label="test (reported)")
    bx.set_title("the FER+ scoreboard (most-voted label)", fontsize=10)
    ax.axvline(budget, color="gray", ls=":", label="budget (today's default)")
    ax.set_ylabel("accuracy, %")
    for a in (ax, bx):
        a.grid(alpha=0.3)
        a.legend(fontsize=8, loc="upper left" if a is ax else "lower left")
    ax.set_xlabel("training compute, TFLOP (FLOPs/image x images x epochs)")
    fig.suptitle("Experiments: accuracy against training compute, on both scoreboards")
    return fig
