"""When a model counts as better: one rule for the registry's ``@champion`` alias and for the retrain
workflow's pull request.

The rule, decided on val (PublicTest) only, paired on the same images against the current
champion's stored predictions (no old model is re-run):

    promote  iff  gain >= min_gain_points  and  b > c  and  McNemar exact p < alpha

where b = images the candidate gets right and the champion wrong, c = the reverse, gain = the
accuracy difference in points, and p = McNemar's exact (two-sided binomial) test on b and c. The
same comparison on test (PrivateTest) is reported beside it and never decides.

Accuracies are reported with a 95% Wilson score interval.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass

import numpy as np

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


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: under 'no difference' the b + c discordant images split
    like fair coin flips, so p = P(a Binomial(b + c, 1/2) is at least as far from the middle)."""
    from scipy.stats import binomtest

    n = b + c
    if n == 0:
        return 1.0
    return float(binomtest(min(b, c), n, 0.5, alternative="two-sided").pvalue)


@dataclass
class Comparison:
    split: str
    images: int
    candidate_accuracy: float
    champion_accuracy: float
    gain_points: float
    b_candidate_only: int   # right by the candidate, wrong by the champion
    c_champion_only: int    # wrong by the candidate, right by the champion
    p_value: float

    def line(self) -> str:
        return (f"{self.split}: {100 * self.candidate_accuracy:.2f}% vs {100 * self.champion_accuracy:.2f}% "
                f"({self.gain_points:+.2f} pt; {self.b_candidate_only} images only the candidate gets right, "
                f"{self.c_champion_only} only the champion; McNemar exact p = {self.p_value:.3g})")


def compare(split: str, y: np.ndarray, candidate: np.ndarray, champion: np.ndarray) -> Comparison:
    """Paired comparison of two sets of predicted labels on the same images ``y``."""
    y, candidate, champion = (np.asarray(a) for a in (y, candidate, champion))
    if not (len(y) == len(candidate) == len(champion)):
        raise ValueError(f"{split}: predictions cover different images ({len(candidate)} vs {len(champion)})")
    new_ok, old_ok = candidate == y, champion == y
    b, c = int(np.sum(new_ok & ~old_ok)), int(np.sum(~new_ok & old_ok))
    acc_new, acc_old = float(new_ok.mean()), float(old_ok.mean())
    return Comparison(split, int(len(y)), round(acc_new, 4), round(acc_old, 4),
                      round(100 * (acc_new - acc_old), 2), b, c, round(mcnemar_exact_p(b, c), 6))


@dataclass
class Decision:
    promote: bool
    rule: str
    reason: str
    val: dict | None = None     # the Comparison that decided
    test: dict | None = None    # reported only

    def to_dict(self) -> dict:
        return asdict(self)


def rule_text(alpha: float, min_gain_points: float) -> str:
    return (f"promote iff val gain >= {min_gain_points} pt and McNemar exact p < {alpha} "
            f"(paired on the same PublicTest images)")


def decide(val: Comparison, test: Comparison | None, alpha: float, min_gain_points: float) -> Decision:
    """The promotion rule (module docstring)."""
    better = (val.gain_points >= min_gain_points and val.b_candidate_only > val.c_champion_only
              and val.p_value < alpha)
    if better:
        why = f"better on val by {val.gain_points:+.2f} pt, p = {val.p_value:.3g} < {alpha}"
    elif val.gain_points < min_gain_points:
        why = f"val gain {val.gain_points:+.2f} pt is below the {min_gain_points} pt minimum (p = {val.p_value:.3g})"
    else:
        why = f"val gain {val.gain_points:+.2f} pt is not significant: p = {val.p_value:.3g} >= {alpha}"
    return Decision(better, rule_text(alpha, min_gain_points), why, asdict(val), asdict(test) if test else None)


def first_model(alpha: float, min_gain_points: float, reason: str = "no champion yet") -> Decision:
    return Decision(True, rule_text(alpha, min_gain_points), reason)


def keep_champion(alpha: float, min_gain_points: float, reason: str) -> Decision:
    return Decision(False, rule_text(alpha, min_gain_points), reason)


# Predictions as stored: CSV of label names, one row per image in the split's fixed order.

def read_predictions_csv(text: str, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``actual,predicted`` CSV text -> (true label ids, predicted label ids)."""
    index = {name: i for i, name in enumerate(labels)}
    rows = list(csv.DictReader(io.StringIO(text)))
    return (np.array([index[r["actual"]] for r in rows], np.int64),
            np.array([index[r["predicted"]] for r in rows], np.int64))


def decide_from_csv(candidate: dict[str, str], champion: dict[str, str], labels: list[str], alpha: float,
                    min_gain_points: float) -> Decision:
    """The rule applied to stored predictions: ``{"val": csv_text, "test": csv_text}`` for each side.
    Predictions of different images (another data version) cannot be paired: the champion stays."""
    comps = {}
    for split in ("val", "test"):
        if split not in champion or split not in candidate:
            continue
        y_new, p_new = read_predictions_csv(candidate[split], labels)
        y_old, p_old = read_predictions_csv(champion[split], labels)
        if len(y_new) != len(y_old) or not np.array_equal(y_new, y_old):
            return keep_champion(alpha, min_gain_points,
                                 f"the champion's {split} predictions are of other images "
                                 f"({len(y_old)} vs {len(y_new)}): no paired comparison, champion kept")
        comps[split] = compare(split, y_new, p_new, p_old)
    if "val" not in comps:
        return keep_champion(alpha, min_gain_points, "the champion has no stored val predictions: champion kept")
    return decide(comps["val"], comps.get("test"), alpha, min_gain_points)
