"""The model card and the headline metrics, rendered from hand-built results."""

import numpy as np

from fer_pipeline.report import headline, model_card

LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def _split(acc, lo, hi, tta=None):
    m = {"accuracy": acc, "accuracy_ci95": [lo, hi], "macro_f1": 0.6, "weighted_f1": 0.65,
         "per_class": {n: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 10} for n in LABELS}}
    return {**m, "tta_accuracy": tta, "tta_views": 10} if tta else m


METRICS = {"test": _split(0.6701, 0.6545, 0.6853, tta=0.6826), "val": _split(0.6665, 0.651, 0.682, tta=0.681),
           "combined_test_folder": {"images": 7178, "accuracy": 0.668, "tta_accuracy": 0.682}}
TRAIN = {"params": 1242151, "epochs_run": 22, "train_seconds": 3030.0, "train_images_per_second": 203.0,
         "epoch_seconds": 137.7, "train_gflop_per_image": 0.705, "train_compute_tflop": 434.8,
         "best_val_accuracy": 0.6665, "best_epoch": 21}
DECISION = {"model": "fer-emotion", "version": 2, "alias": "challenger", "reason": "val gain -0.59 pt is below",
            "rule": "promote iff ...", "p_value": 0.35,
            "val": {"candidate_accuracy": 0.6606, "champion_accuracy": 0.6665, "gain_points": -0.59,
                    "b_candidate_only": 219, "c_champion_only": 240, "p_value": 0.35},
            "test": None}


PEERS = [{"model": "a peer", "privatetest": 0.657, "publictest": 0.652, "combined": None}]


def test_model_card_shows_the_figures_it_is_given():
    card = model_card(METRICS, TRAIN, {"rows": {"train": 28006, "val": 3589, "test": 3589},
                                       "dropped": {"train_duplicates": 703}},
                      {"expectations": 16, "failed": 0, "duplicates_within_split": 1, "duplicates_across_splits": 2,
                       "near_blank": 3}, DECISION, {"evaluate": {"tta_shift_px": 2}},
                      {"confusion_test.png": "confusion_test.png",
                       "test_correct.png": "../../data/figures/evaluate/test_correct.png"}, "`bn_vgg`", PEERS)
    assert "| **test = PrivateTest** (70 images) | **67.0%** | 65.5%-68.5% | 0.600 | 0.650 | 68.3% |" in card
    assert "accuracy (TTA, 10 views)" in card and "shifted 2 px left, right, up and down" in card
    assert "Train = Training (28,006 images after cleaning)" in card and "train duplicates: 703" in card
    assert "| happy | 0.500 | 0.500 | 0.500 | 10 |" in card
    assert "alias `challenger`: val gain -0.59 pt is below." in card
    assert "- val (decides): 66.06% vs champion 66.65% (-0.59 pt), 219 images right only here" in card
    assert "- test (" not in card                                   # no test comparison given
    assert "![confusion_test](confusion_test.png)" in card          # paths as given: relative to the card
    assert "![test_correct](../../data/figures/evaluate/test_correct.png)" in card
    assert "1,242,151 parameters" in card and "434.8 TFLOP" in card
    assert "{{" not in card and "{%" not in card
    assert "## Calibration" not in card                             # no calibration measured


def test_model_card_states_the_calibration_and_its_decision():
    from fer_pipeline.calibration import calibrate

    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7), 400)
    y = probs.argmax(1)                       # always right: very underconfident
    cal = calibrate((probs, y), (probs, y), 15, 0.005)
    card = model_card({**METRICS, "calibration": cal}, TRAIN, {}, {}, None, {"evaluate": {"tta_shift_px": 2}},
                      {"reliability_test.png": "reliability_test.png"}, "`bn_vgg`", PEERS)
    assert "## Calibration: what a probability means" in card
    assert f"Test: ECE {cal['test']['ece']:.3f}" in card and f"(T = {cal['temperature']:.2f})" in card
    assert cal["helps"] and "do not apply it yet" in card and f"Decided on val alone: {cal['decision']}" in card
    assert "![reliability](reliability_test.png)" in card


def test_model_card_without_tta_or_registry():
    m = {**METRICS, "test": _split(0.5, 0.4, 0.6), "val": _split(0.5, 0.4, 0.6),
         "combined_test_folder": {"images": 140, "accuracy": 0.5}}
    card = model_card(m, TRAIN, {}, {}, None, {"evaluate": {"tta_shift_px": 2}}, {}, "`bn_vgg`", PEERS)
    assert "TTA" not in card and "Registry step disabled." in card
    assert "| **test = PrivateTest** (70 images) | **50.0%** | 40.0%-60.0% | 0.600 | 0.650 |\n" in card


def test_headline_keeps_short_names_and_drops_missing_figures():
    h = headline(METRICS, TRAIN, DECISION)
    assert h["test_acc"] == 0.6701 and (h["test_lo"], h["test_hi"]) == (0.6545, 0.6853)
    assert h["p_champ"] == 0.35 and h["minutes"] == 50.5 and h["tflop"] == 434.8
    assert all(len(k) <= 8 for k in h)
    assert "p_champ" not in headline(METRICS, TRAIN, None)
