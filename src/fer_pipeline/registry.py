"""The model registry, and when a model counts as better: one rule for the registry's ``@champion``
alias and for the retrain workflow's pull request.

The rule, decided on val (PublicTest) only, paired on the same images against the current
champion's stored predictions (no old model is re-run):

    promote  iff  gain >= min_gain_points  and  b > c  and  McNemar exact p < alpha

where b = images the candidate gets right and the champion wrong, c = the reverse, gain = the
accuracy difference in points, and p = McNemar's exact (two-sided binomial) test on b and c. The
same comparison on test (PrivateTest) is reported beside it and never decides.

Which labels count as right is the candidate's training target (``train.labels``): FER2013's
(column ``actual``, every image) or the FER+ most-voted label (column ``ferplus``, the images that
have one). Either way both sides are paired on the same images.

Predictions are stored as CSV (``actual,predicted,ferplus`` label names, one row per image in the
split's fixed order; ``ferplus`` empty where FER+ has no most-voted label) with each evaluate run in
MLflow and in ``reports/eval/``.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

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
TARGET_COLUMN = {"fer2013": "actual", "ferplus_majority": "ferplus", "ferplus_soft": "ferplus"}
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
                    min_gain_points: float, target: str = "fer2013") -> Decision:
    """The rule applied to stored predictions: ``{"val": csv_text, "test": csv_text}`` for each side,
    judged against the labels of the candidate's training ``target`` (``train.labels``; the
    candidate's CSV holds them). Predictions of different images (another data version) cannot be
    paired: the champion stays."""
    column = TARGET_COLUMN[target]
    comps = {}
    for split in ("val", "test"):
        if split not in champion or split not in candidate:
            continue
        same_new, p_new = read_predictions_csv(candidate[split], labels)
        same_old, p_old = read_predictions_csv(champion[split], labels)
        if len(same_new) != len(same_old) or not np.array_equal(same_new, same_old):
            return keep_champion(alpha, min_gain_points,
                                 f"the champion's {split} predictions are of other images "
                                 f"({len(same_old)} vs {len(same_new)}): no paired comparison, champion kept", column)
        y, _ = read_predictions_csv(candidate[split], labels, column)
        has = y >= 0
        comps[split] = compare(split, y[has], p_new[has], p_old[has])
    if "val" not in comps:
        return keep_champion(alpha, min_gain_points, "the champion has no stored val predictions: champion kept",
                             column)
    return decide(comps["val"], comps.get("test"), alpha, min_gain_points, column)

def write_predictions_csv(path, y_true: np.ndarray, y_pred: np.ndarray, ferplus: np.ndarray | None = None) -> None:
    """Per-image ``actual,predicted,ferplus`` label names (FER2013 label, prediction, FER+ most-voted
    label or empty): the input of DVC's confusion template and of the promotion rule."""
    ferplus = np.full(len(y_true), -1) if ferplus is None else ferplus
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["actual", "predicted", "ferplus"])
        w.writerows((LABELS[a], LABELS[b], LABELS[f] if f >= 0 else "") for a, b, f in zip(y_true, y_pred, ferplus))


# MLflow: the registered model's versions, aliases and their stored predictions


def logged_model_uri(run_id: str) -> str:
    """``models:/m-...`` of the model the run logged (MLflow 3 logged models), else ``runs:/``."""
    import mlflow

    run = mlflow.get_run(run_id)
    found = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id],
                                        filter_string=f"source_run_id = '{run_id}'", output_format="list")
    return f"models:/{found[0].model_id}" if found else f"runs:/{run_id}/model"


PREDICTION_ARTIFACTS = {"val": "evaluation/val_predictions.csv", "test": "evaluation/test_predictions.csv"}


def stored_predictions(run_id: str) -> dict[str, str]:
    """The val / test prediction CSVs an evaluate run stored with MLflow (empty if none)."""
    import mlflow

    out = {}
    for split, path in PREDICTION_ARTIFACTS.items():
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path)
        except Exception:  # noqa: BLE001  (MLflow raises several types for a missing artifact)
            continue
        out[split] = Path(local).read_text()
    return out


def register_and_decide(run_id: str, model_name: str, candidate: dict[str, str], alpha: float,
                        min_gain_points: float, target: str = "fer2013") -> dict:
    """Register the model logged by ``run_id`` (whose evaluation, with ``candidate`` predictions,
    is stored in the same run); move ``@champion`` to it only if the rule (module docstring) says it beats
    the current champion on val, else give it ``@challenger``. Idempotent per run: evaluating the
    same run again reuses its version and its recorded decision, comparisons included (tag
    ``decision_record``), so a rerun of the evaluate stage writes the same report."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        existing = client.search_model_versions(f"name='{model_name}' and run_id='{run_id}'")
    except MlflowException:
        existing = []
    if existing:
        newest = max(existing, key=lambda mv: int(mv.version))
        v = client.get_model_version(model_name, newest.version)  # search results carry no aliases
        alias = "champion" if "champion" in v.aliases else "challenger"
        # decision_record is absent on versions registered before it: their comparisons are unknown
        record = json.loads(v.tags.get("decision_record") or '{"previous_champion": null, "val": null, "test": null}')
        p_tag = v.tags.get("decision_p_value")
        return {"model": model_name, "version": int(v.version), "alias": alias,
                "reason": v.tags.get("decision", f"run already registered as v{v.version}"),
                "rule": v.tags.get("decision_rule", ""),
                "p_value": record["val"]["p_value"] if record["val"] else float(p_tag) if p_tag else None,
                **record}
    try:
        champ = client.get_model_version_by_alias(model_name, "champion")
    except MlflowException:
        champ = None
    if champ is None:
        decision = first_model(alpha, min_gain_points, "first registered version: no champion yet",
                               TARGET_COLUMN[target])
    else:
        stored = stored_predictions(champ.run_id)
        decision = decide_from_csv(candidate, stored, list(LABELS), alpha, min_gain_points, target)
        decision.reason = f"{decision.reason} (champion v{champ.version})"
    version = mlflow.register_model(logged_model_uri(run_id), model_name).version
    alias = "champion" if decision.promote else "challenger"
    client.set_registered_model_alias(model_name, alias, version)
    p_value = decision.val["p_value"] if decision.val else None
    record = {"previous_champion": int(champ.version) if champ is not None else None,
              "val": decision.val, "test": decision.test}
    for key, value in {"decision": decision.reason, "decision_rule": decision.rule,
                       "decision_p_value": "" if p_value is None else f"{p_value:.6g}",
                       "decision_record": json.dumps(record)}.items():
        client.set_model_version_tag(model_name, version, key, value)
    return {"model": model_name, "version": int(version), "alias": alias, "reason": decision.reason,
            "rule": decision.rule, "p_value": p_value, **record}


