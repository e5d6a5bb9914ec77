"""When a model counts as better: one rule for the registry's ``@champion`` alias (``registry``)
and for the retrain workflow's pull request (``workflow``).

The rule, decided on val (PublicTest) only, paired on the same images against the current
champion's stored predictions (no old model is re-run):

    promote  iff  gain >= min_gain_points  and  b > c  and  McNemar exact p < alpha

where b = images the candidate gets right and the champion wrong, c = the reverse, gain = the
accuracy difference in points, and p = McNemar's exact (two-sided binomial) test on b and c. The
same comparison on test (PrivateTest) is reported beside it and never decides.

Which labels count as right is the candidate's training target (``train.labels``): FER2013's
(column ``actual``, every image) or the FER+ most-voted label (column ``ferplus``, the images that
have one). Either way both sides are paired on the same images. A candidate trained on other labels
than the champion must pass the rule against both label sets (``decide_from_csv``).

Predictions are stored as CSV (``actual,predicted,ferplus`` label names, one row per image in the
split's fixed order; ``ferplus`` empty where FER+ has no most-voted label) with each evaluate run in
MLflow and in ``reports/evaluate/``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass

import numpy as np

from .fsutil import atomic_path
from .labels import LABELS


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
    # p unrounded: a p far below 1e-6 is not 0
    return Comparison(split, int(len(y)), round(acc_new, 4), round(acc_old, 4),
                      round(100 * (acc_new - acc_old), 2), b, c, mcnemar_exact_p(b, c))


@dataclass
class Decision:
    promote: bool
    rule: str
    reason: str
    val: dict | None = None     # the Comparison that decided
    test: dict | None = None    # reported only

    def to_dict(self) -> dict:
        return asdict(self)


# train.labels -> the predictions CSV column that holds the labels promotion is judged against
TARGET_COLUMN = {"fer2013": "actual", "ferplus_majority": "ferplus", "ferplus_soft": "ferplus", "fused": "ferplus"}
TARGET_TEXT = {"actual": "FER2013 labels", "ferplus": "FER+ most-voted labels"}


def rule_text(alpha: float, min_gain_points: float, column: str = "actual") -> str:
    return (f"promote iff val gain >= {min_gain_points} pt and McNemar exact p < {alpha} "
            f"(paired on the same PublicTest images, against {TARGET_TEXT[column]})")


def decide(val: Comparison, test: Comparison | None, alpha: float, min_gain_points: float,
           column: str = "actual") -> Decision:
    """The promotion rule (module docstring)."""
    better = (val.gain_points >= min_gain_points and val.b_candidate_only > val.c_champion_only
              and val.p_value < alpha)
    if better:
        why = f"better on val by {val.gain_points:+.2f} pt, p = {val.p_value:.3g} < {alpha}"
    elif val.gain_points < min_gain_points:
        why = f"val gain {val.gain_points:+.2f} pt is below the {min_gain_points} pt minimum (p = {val.p_value:.3g})"
    else:
        why = f"val gain {val.gain_points:+.2f} pt is not significant: p = {val.p_value:.3g} >= {alpha}"
    return Decision(better, rule_text(alpha, min_gain_points, column), why, asdict(val),
                    asdict(test) if test else None)


def first_model(alpha: float, min_gain_points: float, reason: str = "no champion yet",
                column: str = "actual") -> Decision:
    return Decision(True, rule_text(alpha, min_gain_points, column), reason)


def keep_champion(alpha: float, min_gain_points: float, reason: str, column: str = "actual") -> Decision:
    return Decision(False, rule_text(alpha, min_gain_points, column), reason)




def read_predictions_csv(text: str, labels: list[str], column: str = "actual") -> tuple[np.ndarray, np.ndarray]:
    """Predictions CSV text -> (true label ids from ``column``, -1 where empty; predicted label ids)."""
    index = {name: i for i, name in enumerate(labels)}
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and column not in rows[0]:
        raise ValueError(f"predictions CSV has no column {column!r} (written before the FER+ labels)")
    return (np.array([index[r[column]] if r[column] else -1 for r in rows], np.int64),
            np.array([index[r["predicted"]] for r in rows], np.int64))


def decide_from_csv(candidate: dict[str, str], champion: dict[str, str], labels: list[str], alpha: float,
                    min_gain_points: float, target: str = "fer2013", champion_target: str | None = None) -> Decision:
    """The rule applied to stored predictions: ``{"val": csv_text, "test": csv_text}`` for each side,
    judged against the labels of the candidate's training ``target`` (``train.labels``; the
    candidate's CSV holds them). Predictions of different images (another data version) cannot be
    paired: the champion stays. A champion trained on other labels (``champion_target``) is beaten
    only by a candidate that passes the rule on both label sets, so neither scoreboard can take the
    alias from the other: changing the kind of label the champion is judged on is a person's call."""
    column = TARGET_COLUMN[target]
    predicted = {}   # split -> (candidate's predictions, champion's), paired on the same images
    for split in ("val", "test"):
        if split not in champion or split not in candidate:
            continue
        same_new, p_new = read_predictions_csv(candidate[split], labels)
        same_old, p_old = read_predictions_csv(champion[split], labels)
        if len(same_new) != len(same_old) or not np.array_equal(same_new, same_old):
            return keep_champion(alpha, min_gain_points,
                                 f"the champion's {split} predictions are of other images "
                                 f"({len(same_old)} vs {len(same_new)}): no paired comparison, champion kept", column)
        predicted[split] = (p_new, p_old)
    if "val" not in predicted:
        return keep_champion(alpha, min_gain_points, "the champion has no stored val predictions: champion kept",
                             column)

    def judged_on(col: str) -> Decision:
        comps = {}
        for split, (p_new, p_old) in predicted.items():
            y, _ = read_predictions_csv(candidate[split], labels, col)
            has = y >= 0
            comps[split] = compare(split, y[has], p_new[has], p_old[has])
        return decide(comps["val"], comps.get("test"), alpha, min_gain_points, col)

    decision = judged_on(column)
    other = TARGET_COLUMN[champion_target or target]
    if other == column or not decision.promote:
        return decision
    second = judged_on(other)
    trained = f"trained on {target}, the champion on {champion_target}"
    if not second.promote:
        return Decision(False, decision.rule, f"{decision.reason}, but {trained}, and against the champion's "
                        f"{TARGET_TEXT[other]} {second.reason}: champion kept", decision.val, decision.test)
    decision.reason = f"{decision.reason}; {trained}, and against its {TARGET_TEXT[other]} also {second.reason}"
    return decision


def write_predictions_csv(path, y_true: np.ndarray, y_pred: np.ndarray, ferplus: np.ndarray | None = None) -> None:
    """Per-image ``actual,predicted,ferplus`` label names (FER2013 label, prediction, FER+ most-voted
    label or empty): the input of DVC's confusion template and of the promotion rule."""
    ferplus = np.full(len(y_true), -1) if ferplus is None else ferplus
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["actual", "predicted", "ferplus"])
        w.writerows((LABELS[a], LABELS[b], LABELS[f] if f >= 0 else "") for a, b, f in zip(y_true, y_pred, ferplus))
