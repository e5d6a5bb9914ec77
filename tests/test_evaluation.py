import numpy as np
import pytest

from fer_pipeline.evaluation import (classification_metrics, confusion, evaluate_model, register_and_decide,
                                     shifted, tta_offsets, write_predictions_csv)
from fer_pipeline.labels import LABELS


def test_metrics_match_hand_computed_values():
    # 8 predictions over classes 0 (angry), 3 (happy), 5 (sad).
    y_true = np.array([0, 0, 0, 3, 3, 3, 3, 5])
    y_pred = np.array([0, 0, 3, 3, 3, 3, 5, 5])
    m = classification_metrics(y_true, y_pred)
    assert m["accuracy"] == 0.75
    # angry: P 2/2, R 2/3, F1 0.8; happy: P 3/4, R 3/4, F1 0.75; sad: P 1/2, R 1/1, F1 2/3.
    assert m["per_class"]["angry"] == {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "support": 3}
    assert m["per_class"]["happy"]["f1"] == 0.75 and m["per_class"]["sad"]["f1"] == pytest.approx(0.6667)
    assert m["per_class"]["disgust"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx(round((0.8 + 0.75 + 2 / 3) / 7, 4))
    assert m["weighted_f1"] == pytest.approx(round((3 * 0.8 + 4 * 0.75 + 1 * 2 / 3) / 8, 4))


def test_confusion_rows_are_true_labels_in_canonical_order(tmp_path):
    y_true = np.array([LABELS.index("sad")] * 3 + [LABELS.index("angry")])
    y_pred = np.array([LABELS.index("neutral")] * 2 + [LABELS.index("sad"), LABELS.index("angry")])
    cm = confusion(y_true, y_pred)
    assert cm.shape == (7, 7)
    assert cm[LABELS.index("sad"), LABELS.index("neutral")] == 2
    assert cm[LABELS.index("sad"), LABELS.index("sad")] == 1 and cm[0, 0] == 1
    write_predictions_csv(tmp_path / "p.csv", y_true, y_pred)
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[:2] == ["actual,predicted", "sad,neutral"] and lines[-1] == "angry,angry"


class FixedModel:
    """Stands in for a Keras model: predicts class = the image's first pixel value (mod 7)."""

    def predict(self, x, batch_size=None, verbose=0):
        k = x[:, 0, 0, 0].astype(int) % 7
        return np.eye(7, dtype=np.float32)[k] * 0.9 + 0.1 / 7


def test_evaluate_model_reports_val_test_combined_and_tta():
    x = np.zeros((4, 48, 48, 1), np.uint8)
    x[:, 0, 0, 0] = x[:, 0, 47, 0] = [0, 1, 2, 3]  # symmetric: the mirror predicts the same class
    x[2, 0, 47, 0] = 5  # mirrored, image 2 looks like class 5: TTA averages 2 and 5 -> tie -> 2
    splits = {"val": (x, np.array([0, 1, 2, 3])), "test": (x, np.array([0, 1, 2, 4]))}
    m, preds = evaluate_model(FixedModel(), splits, tta=True)
    assert m["val"]["accuracy"] == 1.0 and m["test"]["accuracy"] == 0.75
    assert m["combined_test_folder"] == {"images": 8, "accuracy": 0.875, "tta_accuracy": 0.875}
    assert preds["test"].shape == (4, 7)


def test_shifted_moves_content_and_reflects_the_border():
    x = np.arange(2 * 6 * 5, dtype=np.uint8).reshape(2, 6, 5, 1)
    right = shifted(x, 2, 0)
    assert right.shape == x.shape
    assert np.array_equal(right[:, :, 2:], x[:, :, :3])             # column c moved to c + 2
    assert np.array_equal(right[:, :, 0], x[:, :, 2])               # border reflected, not zeros
    down = shifted(x, 0, 1)
    assert np.array_equal(down[:, 1:], x[:, :-1]) and np.array_equal(down[:, 0], x[:, 1])
    assert np.array_equal(shifted(x, -2, 0)[:, :, :3], x[:, :, 2:])
    assert shifted(x, 0, 0) is x
    assert tta_offsets(0) == [] and sorted(tta_offsets(2)) == [(-2, 0), (0, -2), (0, 2), (2, 0)]


def test_shift_tta_averages_ten_views():
    # Class = value of the top-left pixel. Image 0 shows class 1 only there (a 1-pixel spot, which
    # any shift moves away: 8 of 10 views see class 0); image 1 is uniform (all views agree).
    x = np.zeros((2, 48, 48, 1), np.uint8)
    x[0, 0, 0, 0] = x[0, 0, 47, 0] = 1
    x[1] = 3
    splits = {"test": (x, np.array([1, 3]))}
    flip_only, _ = evaluate_model(FixedModel(), splits, tta=True, shift_px=0)
    ten, preds = evaluate_model(FixedModel(), splits, tta=True, shift_px=2)
    assert flip_only["test"]["tta_views"] == 2 and flip_only["test"]["tta_accuracy"] == 1.0
    assert ten["test"]["tta_views"] == 10 and ten["test"]["tta_accuracy"] == 0.5
    expected = (np.eye(7)[1] * 0.9 + 0.1 / 7) * 0.2 + (np.eye(7)[0] * 0.9 + 0.1 / 7) * 0.8
    assert np.allclose(preds["test_tta"][0], expected)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    from fer_pipeline import tracking

    tracking.setup("registry-test", tmp_path)
    yield mlflow
    mlflow.set_tracking_uri(None)


def _csv(y, pred) -> str:
    return "actual,predicted\n" + "".join(f"{LABELS[a]},{LABELS[b]}\n" for a, b in zip(y, pred))


Y = np.arange(100) % 7


def _preds(right: np.ndarray) -> dict[str, str]:
    """val and test prediction CSVs that are right exactly on the images where ``right`` is True."""
    pred = np.where(right, Y, (Y + 1) % 7)
    return {"val": _csv(Y, pred), "test": _csv(Y, pred)}


def _evaluated_run(mlflow, preds: dict[str, str]) -> str:
    """A run with a logged model and its stored val/test predictions, as evaluate leaves it."""
    from fer_pipeline.models import build_model
    from fer_pipeline.tracking import log_model

    with mlflow.start_run() as run:
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
    won = register_and_decide(_evaluated_run(mlflow, _preds(better)), "fer-test", _preds(better), 0.05, 0.5)
    assert won["alias"] == "champion" and won["p_value"] == pytest.approx(158 / 4096, abs=1e-6)
    assert "champion v1" in won["reason"] and won["val"]["b_candidate_only"] == 10
    assert won["test"]["gain_points"] == 8.0           # reported beside, never deciding
    v = client.get_model_version("fer-test", str(won["version"]))
    assert "champion" in v.aliases and v.tags["decision_p_value"] == "0.038574"
    assert "McNemar" in v.tags["decision_rule"]
    loaded = mlflow.pyfunc.load_model("models:/fer-test@champion")
    assert np.asarray(loaded.predict(np.zeros((2, 48, 48, 1), np.float32))).shape == (2, 7)


def test_a_champion_without_stored_predictions_is_kept(registry):
    mlflow = registry
    right = np.ones(100, bool)
    legacy = _evaluated_run(mlflow, {})
    register_and_decide(legacy, "fer-legacy", _preds(right), 0.05, 0.5)
    d = register_and_decide(_evaluated_run(mlflow, _preds(right)), "fer-legacy", _preds(right), 0.05, 0.5)
    assert d["alias"] == "challenger" and "no stored val predictions" in d["reason"]
