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


def test_an_unknown_target_is_one_line_listing_the_allowed_ones():
    with pytest.raises(FerError, match="unknown target 'ferplus'; allowed: fer2013, ferplus_majority, ferplus_soft"):
        make_targets("ferplus", FER2013, VOTES, training=True)
