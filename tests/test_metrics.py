"""Metrics, intervals and TTA against values worked out by hand."""

import numpy as np
import pytest

from fer_pipeline.labels import LABELS
from fer_pipeline.metrics import (
    classification_metrics,
    confusion,
    evaluate_model,
    shifted,
    tta_offsets,
    wilson_interval,
)
from fer_pipeline.promotion import write_predictions_csv


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
    write_predictions_csv(tmp_path / "p.csv", y_true, y_pred, np.array([LABELS.index("neutral"), -1, -1, -1]))
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[:2] == ["actual,predicted,ferplus", "sad,neutral,neutral"] and lines[-1] == "angry,angry,"


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
    # the border is reflected with the edge pixel repeated (numpy "symmetric"), not zeros
    assert np.array_equal(right[:, :, 0], x[:, :, 1]) and np.array_equal(right[:, :, 1], x[:, :, 0])
    down = shifted(x, 0, 1)
    assert np.array_equal(down[:, 1:], x[:, :-1]) and np.array_equal(down[:, 0], x[:, 0])
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


def test_wilson_interval_by_hand():
    # 67 of 100 at z = 1.96: centre (0.67 + 1.96^2/200) / (1 + 1.96^2/100) = 0.66371,
    # half-width 1.96 * sqrt(0.67 * 0.33 / 100 + 1.96^2 / 40000) / 1.038415 = 0.09066.
    lo, hi = wilson_interval(67, 100)
    assert lo == pytest.approx(0.66371 - 0.09066, abs=2e-5) and hi == pytest.approx(0.66371 + 0.09066, abs=2e-5)
    # No successes: the upper end is z^2 / (n + z^2) (= 0.2775 for n = 10); all successes mirror it.
    assert wilson_interval(0, 10) == pytest.approx((0.0, 3.8415 / 13.8415), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((1 - 3.8415 / 13.8415, 1.0), abs=1e-4)
    # At this project's scale: 67% of 3,589 images is +-1.5 points.
    lo, hi = wilson_interval(2405, 3589)
    assert (hi - lo) / 2 == pytest.approx(0.0154, abs=5e-4)


def test_tta_shifts_fill_the_border_as_the_training_augmentation_does():
    # One convention for uncovered borders: an integer shift through the augmentation's affine op
    # (with its fill mode) gives exactly the pixels of metrics.shifted.
    import keras

    from fer_pipeline.augment import FILL_MODE

    x = np.random.default_rng(1).integers(0, 255, (3, 48, 48, 1)).astype(np.float32)
    for dx, dy in [(2, 0), (-2, 0), (0, 2), (0, -3), (4, -1)]:
        # output pixel (c, r) samples input (c - dx, r - dy): the content moves dx right, dy down
        t = np.array([[1, 0, -dx, 0, 1, -dy, 0, 0]] * 3, np.float32)
        trained = keras.ops.convert_to_numpy(keras.ops.image.affine_transform(
            x, t, interpolation="bilinear", fill_mode=FILL_MODE))
        np.testing.assert_array_equal(shifted(x, dx, dy), trained)
