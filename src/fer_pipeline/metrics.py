"""Metrics of a model on labelled faces: accuracy with its 95% Wilson interval, per-class
precision/recall/F1, confusion matrix, and test-time augmentation (TTA)."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from .labels import LABELS, NUM_CLASSES

Z95 = 1.959963984540054  # the 97.5% point of the standard normal


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / n`` (95% by default)."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def predict_probs(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Class probabilities for raw 0-255 images (n, 48, 48, 1)."""
    return model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    labels = list(range(NUM_CLASSES))
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": round(float(np.mean(y_true == y_pred)), 4),
        "macro_f1": round(float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)), 4),
        "weighted_f1": round(float(f1_score(y_true, y_pred, labels=labels, average="weighted",
                                            zero_division=0)), 4),
        "per_class": {LABELS[i]: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                                  "f1": round(float(f[i]), 4), "support": int(support[i])}
                      for i in labels},
    }


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Rows = true class, columns = predicted class, both in canonical LABELS order."""
    return confusion_matrix(y_true, y_pred, labels=list(range(NUM_CLASSES)))


def shifted(x: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Images moved ``dx`` pixels right and ``dy`` down. The uncovered border is reflected with the
    edge pixel repeated (numpy's ``symmetric``), the fill of the training augmentation (TF's
    ``REFLECT``), so a test-time shift shows the model borders like those it was trained on."""
    p = max(abs(dx), abs(dy))
    if p == 0:
        return x
    h, w = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="symmetric")
    return padded[:, p - dy:p - dy + h, p - dx:p - dx + w, :]


def tta_offsets(shift_px: int) -> list[tuple[int, int]]:
    """Positions averaged by TTA besides the original: none, or 4 shifts of ``shift_px`` (right,
    left, down, up). Each position is seen plain and mirrored: 2 or 10 views, like ten-crop."""
    s = int(shift_px)
    return [(s, 0), (-s, 0), (0, s), (0, -s)] if s > 0 else []


def evaluate_model(model, splits: dict[str, tuple[np.ndarray, np.ndarray]], tta: bool,
                   shift_px: int = 0) -> tuple[dict, dict]:
    """-> (metrics, predictions). Metrics per split (and ``combined`` = val + test, the 7,178-image
    Kaggle test folder); ``tta_*`` figures when ``tta``: mean probabilities over the image and its
    mirror, at the original position and at each of ``tta_offsets(shift_px)``."""
    metrics, preds = {}, {}
    for name, (x, y) in splits.items():
        probs = predict_probs(model, x)
        m = classification_metrics(y, probs.argmax(1))
        if tta:  # reuse the plain predictions; only the other views are new work
            views = [probs, predict_probs(model, x[:, :, ::-1, :])]
            for dx, dy in tta_offsets(shift_px):
                moved = shifted(x, dx, dy)
                views += [predict_probs(model, moved), predict_probs(model, moved[:, :, ::-1, :])]
            tta_probs = np.mean(views, axis=0)
            t = classification_metrics(y, tta_probs.argmax(1))
            m.update({"tta_accuracy": t["accuracy"], "tta_macro_f1": t["macro_f1"], "tta_views": len(views)})
            preds[name + "_tta"] = tta_probs
        metrics[name] = m
        preds[name] = probs
    if "val" in splits and "test" in splits:
        y = np.concatenate([splits["val"][1], splits["test"][1]])
        both = np.concatenate([preds["val"], preds["test"]]).argmax(1)
        c = {"images": int(len(y)), "accuracy": classification_metrics(y, both)["accuracy"]}
        if tta:
            c["tta_accuracy"] = classification_metrics(
                y, np.concatenate([preds["val_tta"], preds["test_tta"]]).argmax(1))["accuracy"]
        metrics["combined_test_folder"] = c
    return metrics, preds


def with_interval(m: dict, y: np.ndarray, y_pred: np.ndarray) -> dict:
    """Add the 95% Wilson interval of the accuracy to a split's metrics."""
    lo, hi = wilson_interval(int(np.sum(y == y_pred)), int(len(y)))
    return {**m, "accuracy_ci95": [round(lo, 4), round(hi, 4)]}


def ferplus_scoreboard(majority: np.ndarray, probs: np.ndarray, tta_probs: np.ndarray | None = None) -> dict:
    """Accuracy against the FER+ most-voted label (``majority``: label ids, -1 = none) on the
    images that have one, with its 95% Wilson interval, macro-F1 and (given) the TTA accuracy."""
    has = np.asarray(majority) >= 0
    y, pred = np.asarray(majority)[has], probs[has].argmax(1)
    m = classification_metrics(y, pred)
    out = {"images": int(has.sum()), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
    out = with_interval(out, y, pred)
    if tta_probs is not None:
        out["tta_accuracy"] = classification_metrics(y, tta_probs[has].argmax(1))["accuracy"]
    return out
