"""Calibration: does a face's top probability mean what it says? Expected calibration error (ECE),
the reliability diagram's bins, and temperature scaling fitted on val.

Temperature scaling divides the model's log-probabilities by one number ``T`` (> 1 softens, < 1
sharpens) fitted to minimise val's log loss; it never changes a predicted class. Whether it helps
is decided on val alone: fitted on one half, the ECE measured on the other, both ways round; it
helps when that held-out ECE falls by at least ``evaluate.calibration_min_ece_gain``. Test's
ECE, before and after, is reported and decides nothing (the protocol).
"""

from __future__ import annotations

import numpy as np


def scaled(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of log(probs) / T: the probabilities the model would give at temperature T."""
    z = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the log loss of ``scaled(probs, T)`` on labels ``y``."""
    from scipy.optimize import minimize_scalar

    r = minimize_scalar(lambda lt: log_loss(scaled(probs, float(np.exp(lt))), y),
                        bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(r.x))


def reliability_bins(probs: np.ndarray, y: np.ndarray, bins: int) -> list[dict]:
    """Equal-width bins of the top probability: per bin the faces, their mean top probability
    (confidence) and the share of them predicted right (accuracy). Empty bins are left out."""
    conf, right = probs.max(axis=1), probs.argmax(axis=1) == y
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        m = which == b
        if m.any():
            out.append({"low": b / bins, "high": (b + 1) / bins, "faces": int(m.sum()),
                        "confidence": float(conf[m].mean()), "accuracy": float(right[m].mean())})
    return out


def ece(probs: np.ndarray, y: np.ndarray, bins: int) -> float:
    """Expected calibration error: the faces-weighted mean |accuracy - confidence| over the bins."""
    rows = reliability_bins(probs, y, bins)
    return float(sum(r["faces"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / max(len(y), 1))


def held_out_gain(probs: np.ndarray, y: np.ndarray, bins: int, seed: int = 0) -> float:
    """Mean ECE drop on one half of val when T is fitted on the other half (both ways round)."""
    idx = np.random.default_rng(seed).permutation(len(y))
    halves = (idx[: len(y) // 2], idx[len(y) // 2:])
    gains = []
    for fit, held in (halves, halves[::-1]):
        t = fit_temperature(probs[fit], y[fit])
        gains.append(ece(probs[held], y[held], bins) - ece(scaled(probs[held], t), y[held], bins))
    return float(np.mean(gains))


def calibrate(val: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], bins: int,
              min_gain: float) -> dict:
    """The calibration report: T fitted on val, whether it helps (decided on val), ECE and log loss
    of val and test before and after, and test's reliability bins before and after."""
    (pv, yv), (pt, yt) = val, test
    t = fit_temperature(pv, yv)
    gain = held_out_gain(pv, yv, bins)
    helps = gain >= min_gain
    report = {"temperature": round(t, 4), "bins": bins, "val_held_out_ece_gain": round(gain, 4),
              "min_ece_gain": min_gain, "helps": bool(helps),
              "decision": (f"temperature {t:.2f} lowers val's held-out ECE by {gain:.4f} (>= {min_gain})" if helps
                           else f"none: temperature {t:.2f} {'lowers' if gain > 0 else 'raises'} val's held-out "
                                f"ECE by {abs(gain):.4f} (a drop of {min_gain} or more counts)")}
    for split, (p, y) in (("val", (pv, yv)), ("test", (pt, yt))):
        report[split] = {"ece": round(ece(p, y, bins), 4), "ece_scaled": round(ece(scaled(p, t), y, bins), 4),
                         "log_loss": round(log_loss(p, y), 4), "log_loss_scaled": round(log_loss(scaled(p, t), y), 4)}
    report["test_bins"] = reliability_bins(pt, yt, bins)
    report["test_bins_scaled"] = reliability_bins(scaled(pt, t), yt, bins)
    return report
