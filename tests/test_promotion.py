"""The promotion rule's statistics against values worked out by hand."""

import numpy as np
import pytest

from fer_pipeline.promotion import (compare, decide, decide_from_csv, mcnemar_exact_p, read_predictions_csv,
                                    wilson_interval)

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def test_mcnemar_exact_p_values_by_hand():
    # b + c discordant images; under "no difference" each is a fair coin: p = 2 * P(X <= min(b, c)).
    assert mcnemar_exact_p(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 2 ** 12)   # 0.0386
    assert mcnemar_exact_p(2, 10) == pytest.approx(2 * (1 + 12 + 66) / 2 ** 12)   # symmetric
    assert mcnemar_exact_p(6, 0) == pytest.approx(2 / 2 ** 6)                     # 0.03125
    assert mcnemar_exact_p(5, 5) == 1.0 and mcnemar_exact_p(1, 0) == 1.0 and mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(20, 8) == pytest.approx(2 * sum([1, 28, 378, 3276, 20475, 98280, 376740, 1184040,
                                                            3108105]) / 2 ** 28)


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
