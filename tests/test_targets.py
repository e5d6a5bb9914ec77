"""Training targets from the FER+ votes: most-voted label, soft distribution, what is dropped."""

import numpy as np
import pytest

from fer_pipeline.errors import FerError
from fer_pipeline.labels import FERPLUS_COLUMNS, LABEL_TO_ID
from fer_pipeline.targets import make_targets, most_voted, soft_distribution


def _votes(**counts) -> list[int]:
    return [counts.get(c, 0) for c in FERPLUS_COLUMNS]


VOTES = np.array([
    _votes(happiness=7, neutral=2, contempt=1),       # happy, clearly
    _votes(anger=4, sadness=4, unknown=2),            # a tie: no most-voted label
    _votes(NF=6, fear=4),                             # mostly not a face
    _votes(contempt=6, disgust=4),                    # contempt wins: no FER2013 class
    _votes(),                                          # FER+ published no votes
    _votes(surprise=5, fear=3, unknown=2),            # surprise
])
FER2013 = np.array([LABEL_TO_ID[n] for n in ("happy", "angry", "fear", "disgust", "neutral", "fear")])


def test_most_voted_is_the_one_emotion_with_the_most_votes_alone():
    assert most_voted(VOTES).tolist() == [LABEL_TO_ID["happy"], -1, -1, -1, -1, LABEL_TO_ID["surprise"]]


def test_soft_targets_are_the_seven_emotion_votes_renormalised_and_sum_to_one():
    dist = soft_distribution(VOTES)
    assert dist[0][LABEL_TO_ID["happy"]] == pytest.approx(7 / 9)
    assert dist[0][LABEL_TO_ID["neutral"]] == pytest.approx(2 / 9)
    assert dist[1][LABEL_TO_ID["angry"]] == dist[1][LABEL_TO_ID["sad"]] == pytest.approx(0.5)
    assert dist[3].tolist() == [0, 1, 0, 0, 0, 0, 0]           # contempt votes dropped: disgust 4/4
    assert dist[5][LABEL_TO_ID["surprise"]] == pytest.approx(5 / 8)
    assert dist[4].sum() == 0
    assert np.allclose(dist[[0, 1, 2, 3, 5]].sum(axis=1), 1.0)


def test_each_target_keeps_and_drops_the_images_its_rule_names():
    t = make_targets("fer2013", FER2013, VOTES, training=True)
    assert t.keep.all() and t.hard.tolist() == FER2013.tolist() and t.dropped == {}
    t = make_targets("ferplus_majority", FER2013, VOTES, training=True)
    assert t.keep.tolist() == [True, False, False, False, False, True]
    assert t.dropped == {"no_ferplus_votes": 1, "no_most_voted_emotion": 3}
    assert t.y.tolist()[0] == np.eye(7)[LABEL_TO_ID["happy"]].tolist()
    t = make_targets("ferplus_soft", FER2013, VOTES, training=True)
    assert t.keep.tolist() == [True, True, False, True, False, True]   # the tie and contempt-led rows train
    assert t.dropped == {"no_ferplus_votes": 1, "mostly_unknown_or_not_a_face": 1, "only_contempt_votes": 0}
    assert np.allclose(t.y.sum(axis=1), 1.0)
    # val / test under soft targets: the images with a most-voted label, whose argmax is that label
    v = make_targets("ferplus_soft", FER2013, VOTES, training=False)
    assert v.keep.tolist() == [True, False, False, False, False, True]
    assert v.y.argmax(1).tolist() == v.hard.tolist() == [LABEL_TO_ID["happy"], LABEL_TO_ID["surprise"]]


def test_fused_targets_add_fer2013s_label_as_extra_votes_and_keep_every_image():
    t = make_targets("fused", FER2013, VOTES, training=True, fused_votes=5)
    assert t.keep.all() and np.allclose(t.y.sum(axis=1), 1.0) and t.dropped == {}
    happy, angry, sad, fear = (LABEL_TO_ID[n] for n in ("happy", "angry", "sad", "fear"))
    assert t.y[0][happy] == pytest.approx((7 + 5) / (9 + 5))          # FER2013 agrees with the taggers
    assert t.y[1][angry] == pytest.approx(9 / 13) and t.y[1][sad] == pytest.approx(4 / 13)   # the tie broken
    assert t.y[4].tolist() == np.eye(7)[LABEL_TO_ID["neutral"]].tolist()   # no votes: FER2013's label alone
    assert t.hard[5] == fear and t.y[5][fear] == pytest.approx(8 / 13)   # surprise 5 against fear 3 + 5
    assert t.hard.tolist()[:2] == [happy, angry]
    # the same rule on val and test: every image kept, FER2013's label winning a tie
    tie = make_targets("fused", FER2013, VOTES, training=False, fused_votes=2)
    assert tie.keep.all() and tie.hard[5] == fear   # surprise 5 against fear 3 + 2: a tie, FER2013's label wins
    with pytest.raises(FerError, match="fused_votes > 0"):
        make_targets("fused", FER2013, VOTES, training=True, fused_votes=0)


def test_an_unknown_target_is_one_line_listing_the_allowed_ones():
    with pytest.raises(FerError,
                       match="unknown target 'ferplus'; allowed: fer2013, ferplus_majority, ferplus_soft, fused"):
        make_targets("ferplus", FER2013, VOTES, training=True)


@pytest.mark.slow
def test_a_ferplus_soft_pipeline_trains_on_votes_and_reports_both_scoreboards(fer_fixture, tmp_path,
                                                                               tiny_validate_cfg):
    """ingest -> evaluate on the tiny fixture with train.labels ferplus_soft, each stage as dvc.yaml
    runs it: train keeps the images the soft rule keeps, evaluate scores test against FER2013 (all
    images) and against the FER+ most-voted label (the images that have one), and the promotion
    rule names the labels it judged."""
    import json
    import os
    import subprocess

    import yaml

    from conftest import REPO
    from helpers import stage_cmd

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["ingest"].update({"input": str(fer_fixture.zip), "votes": str(fer_fixture.votes_csv), "workers": 1})
    raw["validate"] = tiny_validate_cfg
    raw["train"].update({"labels": "ferplus_soft", "epochs": 1, "batch_size": 16,
                         "model": {**raw["train"]["model"],
                                   "bn_vgg": {"widths": [8], "convs_per_stage": 1, "dropout": 0.0, "dense": 0}}})
    raw["evaluate"]["grid_size"] = 4
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/baselines.yaml").write_text((REPO / "reports/baselines.yaml").read_text())
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    for stage in ("ingest", "validate", "preprocess", "train", "evaluate"):
        r = subprocess.run(stage_cmd(stage), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"{stage}: {r.stderr[-2000:]}"
    # by hand, from the fixture's votes: which images each rule keeps
    votes = {rel: v for rel, v in fer_fixture.votes.items()}
    by_split = {"Training": [], "PublicTest": [], "PrivateTest": []}
    for rel, usage, _, _ in fer_fixture.entries:
        by_split[usage].append(votes[rel] or [0] * 10)
    arr = {u: np.array(v) for u, v in by_split.items()}
    soft_train = make_targets("ferplus_soft", np.zeros(len(arr["Training"]), int), arr["Training"], True)
    train_metrics = json.loads((tmp_path / "reports/train/metrics.json").read_text())
    assert train_metrics["labels"] == "ferplus_soft"
    assert train_metrics["train_images"] == int(soft_train.keep.sum()) < 21
    assert train_metrics["val_images"] == int((most_voted(arr["PublicTest"]) >= 0).sum())
    details = json.loads((tmp_path / "reports/evaluate/evaluation.json").read_text())
    n_test_fp = int((most_voted(arr["PrivateTest"]) >= 0).sum())
    assert details["test_ferplus"]["images"] == n_test_fp and 0 < n_test_fp < 21
    assert sum(c["support"] for c in details["test"]["per_class"].values()) == 21
    assert "tta_accuracy" in details["test_ferplus"]
    assert details["registry"]["rule"].endswith("against FER+ most-voted labels)")
    headline = json.loads((tmp_path / "reports/evaluate/metrics.json").read_text())
    assert headline["fp_acc"] == details["test_ferplus"]["accuracy"] and details["target"]["labels"] == "ferplus_soft"
    assert "FER+ most-voted label" in (tmp_path / "reports/evaluate/model_card.md").read_text()
