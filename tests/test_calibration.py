"""Calibration: ECE by hand, temperature scaling recovers a known temperature, and the val-only
decision says 'none' for a calibrated model and 'temperature' for an overconfident one."""

import numpy as np
import pytest

from fer_pipeline.calibration import calibrate, ece, fit_temperature, reliability_bins, scaled


def test_ece_and_bins_by_hand():
    # Four faces, 2 bins of the top probability: 0.6 (right) and 0.7 (wrong) in (0.5, 1];
    # 0.35 and 0.4 (both right) in [0, 0.5].
    probs = np.array([[0.6, 0.4, 0], [0.7, 0.3, 0], [0.3, 0.35, 0.35], [0.2, 0.4, 0.4]])
    y = np.array([0, 1, 1, 1])
    rows = reliability_bins(probs, y, 2)
    assert [r["faces"] for r in rows] == [2, 2]
    low, high = rows
    assert low["confidence"] == pytest.approx((0.35 + 0.4) / 2) and low["accuracy"] == 1.0
    assert high["confidence"] == pytest.approx(0.65) and high["accuracy"] == 0.5
    assert ece(probs, y, 2) == pytest.approx(0.5 * abs(1 - 0.375) + 0.5 * abs(0.5 - 0.65))


def calibrated_sample(n: int, seed: int, temperature: float = 1.0):
    """Labels drawn from the probabilities themselves (a perfectly calibrated model), which are
    then given at ``temperature`` (< 1: overconfident)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, 7))
    true = scaled(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 1.0)
    y = np.array([rng.choice(7, p=p) for p in true])
    return scaled(true, temperature), y


def test_temperature_scaling_recovers_a_known_temperature_and_keeps_every_class():
    probs, y = calibrated_sample(6000, 0, temperature=0.5)   # made overconfident by T = 0.5
    t = fit_temperature(probs, y)
    assert t == pytest.approx(2.0, rel=0.1)                   # undoing it needs T = 2
    np.testing.assert_array_equal(scaled(probs, t).argmax(1), probs.argmax(1))
    assert ece(scaled(probs, t), y, 15) < ece(probs, y, 15) / 3


def test_the_decision_is_none_for_a_calibrated_model_and_temperature_for_an_overconfident_one():
    ok = calibrate(calibrated_sample(4000, 1), calibrated_sample(4000, 2), 15, 0.005)
    assert not ok["helps"] and ok["decision"].startswith("none")
    assert ok["temperature"] == pytest.approx(1.0, abs=0.1) and ok["test"]["ece"] < 0.03
    over = calibrate(calibrated_sample(4000, 1, 0.5), calibrated_sample(4000, 2, 0.5), 15, 0.005)
    assert over["helps"] and over["decision"].startswith("temperature")
    assert over["test"]["ece_scaled"] < over["test"]["ece"] / 2
    assert sum(r["faces"] for r in over["test_bins"]) == 4000
