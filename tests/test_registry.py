"""The promotion rule's statistics against values worked out by hand, and the MLflow registry
moving ``@champion`` by that rule (a real sqlite store)."""

import numpy as np
import pytest

from fer_pipeline.promotion import compare, decide, decide_from_csv, mcnemar_exact_p, read_predictions_csv
from fer_pipeline.registry import register_and_decide

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def test_mcnemar_exact_p_values_by_hand():
    # b + c discordant images; under "no difference" each is a fair coin: p = 2 * P(X <= min(b, c)).
    assert mcnemar_exact_p(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 2 ** 12)   # 0.0386
    assert mcnemar_exact_p(2, 10) == pytest.approx(2 * (1 + 12 + 66) / 2 ** 12)   # symmetric
    assert mcnemar_exact_p(6, 0) == pytest.approx(2 / 2 ** 6)                     # 0.03125
    assert mcnemar_exact_p(5, 5) == 1.0 and mcnemar_exact_p(1, 0) == 1.0 and mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(20, 8) == pytest.approx(2 * sum([1, 28, 378, 3276, 20475, 98280, 376740, 1184040,
                                                            3108105]) / 2 ** 28)


def _pair(b: int, c: int, both: int, neither: int):
    """Predictions on b + c + both + neither images with exactly that discordance pattern."""
    n = b + c + both + neither
    y = np.arange(n) % 7
    wrong = (y + 1) % 7
    new = np.concatenate([y[:b], wrong[b:b + c], y[b + c:b + c + both], wrong[b + c + both:]])
    old = np.concatenate([wrong[:b], y[b:b + c], y[b + c:b + c + both], wrong[b + c + both:]])
    return y, new, old


def test_decision_needs_gain_and_significance_on_val_and_ignores_test():
    y, new, old = _pair(10, 2, 60, 28)                    # +8 points, p = 0.0386
    val = compare("val", y, new, old)
    assert (val.b_candidate_only, val.c_champion_only, val.gain_points) == (10, 2, 8.0)
    test_much_worse = compare("test", *_pair(0, 30, 50, 20))
    d = decide(val, test_much_worse, alpha=0.05, min_gain_points=0.5)
    assert d.promote and "p = 0.0386" in d.reason      # test never decides
    assert not decide(val, None, alpha=0.01, min_gain_points=0.5).promote          # p above alpha
    assert not decide(val, None, alpha=0.05, min_gain_points=10).promote           # gain below minimum
    small = compare("val", *_pair(3, 1, 60, 36))                                   # +2 points, p = 0.625
    d = decide(small, None, alpha=0.05, min_gain_points=0.5)
    assert not d.promote and "not significant: p = 0.625" in d.reason
    worse = compare("val", *_pair(2, 10, 60, 28))
    assert not decide(worse, None, alpha=0.05, min_gain_points=0.0).promote
    far_worse = compare("val", *_pair(0, 30, 50, 20))                               # p = 2 / 2**30
    d = decide(far_worse, None, alpha=0.05, min_gain_points=0.5)
    assert far_worse.p_value == pytest.approx(2 / 2 ** 30) and "(p = 1.86e-09)" in d.reason


def _csv(y, pred) -> str:
    return "actual,predicted\n" + "".join(f"{LABELS[a]},{LABELS[b]}\n" for a, b in zip(y, pred))


def test_stored_csv_predictions_round_trip_and_other_images_are_not_paired():
    y, new, old = _pair(10, 2, 60, 28)
    assert [a.tolist() for a in read_predictions_csv(_csv(y, new), LABELS)] == [y.tolist(), new.tolist()]
    d = decide_from_csv({"val": _csv(y, new), "test": _csv(y, new)}, {"val": _csv(y, old), "test": _csv(y, old)},
                        LABELS, 0.05, 0.5)
    assert d.promote and d.val["p_value"] == pytest.approx(0.038574, abs=1e-6) and d.test["gain_points"] == 8.0
    other = decide_from_csv({"val": _csv(y, new)}, {"val": _csv(y[:50], old[:50])}, LABELS, 0.05, 0.5)
    assert not other.promote and "other images" in other.reason
    missing = decide_from_csv({"val": _csv(y, new)}, {}, LABELS, 0.05, 0.5)
    assert not missing.promote and "no stored val predictions" in missing.reason


def test_a_ferplus_trained_candidate_is_judged_against_the_most_voted_labels_on_the_images_that_have_one():
    y, new, old = _pair(10, 2, 60, 28)                   # against FER+ labels: +8 points, p = 0.0386
    fer2013 = (y + 3) % 7                                # FER2013's labels disagree everywhere: both 0%
    ferplus = [LABELS[v] for v in y] + [""] * 5          # five more images without a most-voted label
    fer2013 = np.concatenate([fer2013, np.zeros(5, int)])
    new, old = np.concatenate([new, np.zeros(5, int)]), np.concatenate([old, np.ones(5, int)])

    def csv3(pred):
        return "actual,predicted,ferplus\n" + "".join(
            f"{LABELS[a]},{LABELS[b]},{f}\n" for a, b, f in zip(fer2013, pred, ferplus))
    cand, champ = {"val": csv3(new)}, {"val": _csv(fer2013, old)}   # an older champion CSV: no ferplus column
    on_fp = decide_from_csv(cand, champ, LABELS, 0.05, 0.5, target="ferplus_soft")
    assert on_fp.promote and on_fp.val["images"] == 100 and on_fp.val["gain_points"] == 8.0
    assert on_fp.rule.endswith("against FER+ most-voted labels)")
    on_fer2013 = decide_from_csv(cand, champ, LABELS, 0.05, 0.5, target="fer2013")
    assert not on_fer2013.promote and on_fer2013.val["images"] == 105


def _csv3(fer2013, pred, ferplus) -> str:
    return "actual,predicted,ferplus\n" + "".join(
        f"{LABELS[a]},{LABELS[b]},{LABELS[f]}\n" for a, b, f in zip(fer2013, pred, ferplus))


def _two_scoreboards():
    """A FER2013-trained champion and a FER+-trained candidate on 100 images: against the FER+
    labels the candidate is 8 points better (p = 0.0386), against FER2013's 8 points worse."""
    fp, new, old = _pair(10, 2, 60, 28)
    fer2013 = (fp + 3) % 7                      # FER2013's label is neither model's answer, except on the
    fer2013[:12] = np.concatenate([old[:10], new[10:12]])   # 12 discordant images, where it takes the other side
    champ = {"val": _csv3(fer2013, old, fp)}
    return fer2013, fp, new, old, champ


def test_a_candidate_trained_on_other_labels_than_the_champion_must_win_on_both():
    fer2013, fp, new, old, champ = _two_scoreboards()
    cand = {"val": _csv3(fer2013, new, fp)}
    assert compare("val", fer2013, new, old).gain_points == -8.0
    alone = decide_from_csv(cand, champ, LABELS, 0.05, 0.5, target="ferplus_soft")   # champion's labels unknown
    assert alone.promote and alone.val["gain_points"] == 8.0
    d = decide_from_csv(cand, champ, LABELS, 0.05, 0.5, target="ferplus_soft", champion_target="fer2013")
    assert not d.promote and d.val["gain_points"] == 8.0
    assert "trained on ferplus_soft, the champion on fer2013" in d.reason
    assert "FER2013 labels val gain -8.00 pt" in d.reason
    # the reverse: a FER2013-trained candidate does not take the alias from a FER+ champion on FER2013 labels
    back = decide_from_csv({"val": _csv3(fer2013, old, fp)}, {"val": _csv3(fer2013, new, fp)}, LABELS, 0.05, 0.5,
                           target="fer2013", champion_target="ferplus_soft")
    assert not back.promote and "FER+ most-voted labels val gain -8.00 pt" in back.reason
    # better on both label sets: promoted, and the reason names both
    both = decide_from_csv({"val": _csv3(fp, new, fp)}, {"val": _csv3(fp, old, fp)}, LABELS, 0.05, 0.5,
                           target="ferplus_soft", champion_target="fer2013")
    assert both.promote and "against its FER2013 labels also better on val by +8.00 pt" in both.reason


@pytest.fixture
def registry(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    from fer_pipeline import tracking

    tracking.setup("registry-test", tmp_path)
    yield mlflow
    mlflow.set_tracking_uri(None)


Y = np.arange(100) % 7


def _preds(right: np.ndarray) -> dict[str, str]:
    """val and test prediction CSVs that are right exactly on the images where ``right`` is True."""
    pred = np.where(right, Y, (Y + 1) % 7)
    return {"val": _csv(Y, pred), "test": _csv(Y, pred)}


def _evaluated_run(mlflow, preds: dict[str, str], labels: str = "fer2013") -> str:
    """A run with a logged model and its stored val/test predictions, as evaluate leaves it."""
    from fer_pipeline.models import build_model
    from fer_pipeline.tracking import log_model

    with mlflow.start_run() as run:
        mlflow.log_param("train.labels", labels)
        log_model(build_model("bn_vgg", 48, widths=(4,), convs_per_stage=1, dense=0, dropout=0.0))
        for split, text in preds.items():
            mlflow.log_text(text, f"evaluation/{split}_predictions.csv")
    return run.info.run_id


def test_champion_moves_only_on_a_significant_val_gain(registry):
    mlflow = registry
    client = mlflow.MlflowClient()
    base = np.zeros(100, bool)
    base[:60] = True                                   # 60% right
    run1 = _evaluated_run(mlflow, _preds(base))
    first = register_and_decide(run1, "fer-test", _preds(base), 0.05, 0.5)
    assert (first["version"], first["alias"]) == (1, "champion") and "no champion yet" in first["reason"]
    again = register_and_decide(run1, "fer-test", _preds(base), 0.05, 0.5)  # re-evaluating adds no version
    assert (again["version"], again["alias"]) == (1, "champion") and again["reason"] == first["reason"]

    one_more = base.copy()
    one_more[60] = True                                # +1 point: b = 1, c = 0, p = 1.0
    small = register_and_decide(_evaluated_run(mlflow, _preds(one_more)), "fer-test", _preds(one_more), 0.05, 0.5)
    assert small["alias"] == "challenger" and small["p_value"] == 1.0 and "not significant" in small["reason"]
    assert str(client.get_model_version_by_alias("fer-test", "champion").version) == "1"

    better = base.copy()
    better[60:70] = True                               # b = 10
    better[:2] = False                                 # c = 2: +8 points, p = 0.0386
    run3 = _evaluated_run(mlflow, _preds(better))
    won = register_and_decide(run3, "fer-test", _preds(better), 0.05, 0.5)
    assert won["alias"] == "champion" and won["p_value"] == pytest.approx(158 / 4096, abs=1e-6)
    assert "champion v1" in won["reason"] and won["val"]["b_candidate_only"] == 10
    assert won["test"]["gain_points"] == 8.0           # reported beside, never deciding
    v = client.get_model_version("fer-test", str(won["version"]))
    assert "champion" in v.aliases and v.tags["decision_p_value"] == "0.0385742"
    assert "McNemar" in v.tags["decision_rule"]
    # evaluating the same run again reports the decision it got, comparisons included
    assert register_and_decide(run3, "fer-test", _preds(better), 0.05, 0.5) == won
    loaded = mlflow.pyfunc.load_model("models:/fer-test@champion")
    assert np.asarray(loaded.predict(np.zeros((2, 48, 48, 1), np.float32))).shape == (2, 7)


def test_a_champion_without_stored_predictions_is_kept(registry):
    mlflow = registry
    right = np.ones(100, bool)
    legacy = _evaluated_run(mlflow, {})
    register_and_decide(legacy, "fer-legacy", _preds(right), 0.05, 0.5)
    d = register_and_decide(_evaluated_run(mlflow, _preds(right)), "fer-legacy", _preds(right), 0.05, 0.5)
    assert d["alias"] == "challenger" and "no stored val predictions" in d["reason"]


def test_a_ferplus_trained_experiment_does_not_take_champion_from_the_fer2013_default(registry):
    mlflow = registry
    fer2013, fp, new, old, champ = _two_scoreboards()
    first = register_and_decide(_evaluated_run(mlflow, champ), "fer-two", champ, 0.05, 0.5)
    assert first["alias"] == "champion"
    cand = {"val": _csv3(fer2013, new, fp)}
    d = register_and_decide(_evaluated_run(mlflow, cand, "ferplus_soft"), "fer-two", cand, 0.05, 0.5,
                            target="ferplus_soft")
    assert d["alias"] == "challenger" and "the champion on fer2013" in d["reason"] and "champion v1" in d["reason"]
    assert str(mlflow.MlflowClient().get_model_version_by_alias("fer-two", "champion").version) == "1"
