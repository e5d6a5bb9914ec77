"""Training targets from FER2013's labels or the FER+ votes (params: ``train.labels``).

FER+ (arXiv 1608.01041) had 10 crowd taggers vote on every FER2013 image. Its votes arrive as
ten counts per image in ``labels.FERPLUS_COLUMNS`` order (seven emotions, then contempt, unknown
and NF = not a face); an image FER+ published no votes for has all ten at zero.

- ``fer2013``: FER2013's folder label, every image.
- ``ferplus_majority``: the most-voted label: the one column with the most votes alone, if it is one
  of the seven emotions. Ties, and images whose winner is contempt, unknown or NF, are dropped.
- ``ferplus_soft``: the vote distribution over the seven emotions (FER+'s "probability" mode).
  Contempt votes are dropped (the model keeps FER2013's seven classes) and the rest renormalised;
  images whose votes are mostly (more than half) unknown or NF, or that have no emotion vote, are
  dropped. Validation and test under this target use the images that have a most-voted label, so
  that an accuracy (argmax of the target) is defined: argmax of the seven-way distribution is
  then that label.
- ``fused``: the vote distribution with FER2013's own label added as ``train.fused_votes`` extra
  votes, then renormalised over the seven emotions: the taggers' view, pulled towards FER2013's
  label. Every image is kept (one without FER+ votes is its FER2013 label alone), in every split;
  its hard label (accuracy, checkpoint choice) is the fused distribution's argmax, FER2013's label
  where it ties.

Whatever the training target, the test set is scored twice: against FER2013's labels (every
PrivateTest image) and against the FER+ most-voted label (the images that have one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import FerError
from .labels import FERPLUS_COLUMNS, FERPLUS_TO_LABEL, LABEL_TO_ID, NUM_CLASSES, TARGETS

EMOTIONS = 7  # the first seven FER+ columns are FER2013's emotions
# FER+ column i (of the first seven) -> canonical label id
_COLUMN_TO_LABEL = np.array([LABEL_TO_ID[FERPLUS_TO_LABEL[c]] for c in FERPLUS_COLUMNS[:EMOTIONS]])
_UNKNOWN_NF = [FERPLUS_COLUMNS.index("unknown"), FERPLUS_COLUMNS.index("NF")]


def most_voted(votes: np.ndarray) -> np.ndarray:
    """The FER+ most-voted label per image as a canonical label id, or -1 where there is none (a
    tie for the most votes, a winner that is contempt, unknown or NF, or no votes)."""
    votes = np.asarray(votes)
    top = votes.max(axis=1)
    winner = votes.argmax(axis=1)
    alone = (votes == top[:, None]).sum(axis=1) == 1
    ok = alone & (top > 0) & (winner < EMOTIONS)
    return np.where(ok, _COLUMN_TO_LABEL[np.minimum(winner, EMOTIONS - 1)], -1)


def soft_distribution(votes: np.ndarray) -> np.ndarray:
    """The votes over the seven emotions in canonical label order, each row summing to 1 (rows
    without an emotion vote are all zero)."""
    votes = np.asarray(votes, np.float64)
    dist = np.zeros((len(votes), NUM_CLASSES))
    dist[:, _COLUMN_TO_LABEL] = votes[:, :EMOTIONS]
    total = dist.sum(axis=1, keepdims=True)
    return np.divide(dist, total, out=np.zeros_like(dist), where=total > 0)


def mostly_unknown_or_nf(votes: np.ndarray) -> np.ndarray:
    votes = np.asarray(votes)
    return votes[:, _UNKNOWN_NF].sum(axis=1) * 2 > votes.sum(axis=1)


@dataclass
class Targets:
    keep: np.ndarray      # bool per image: used under this target
    y: np.ndarray         # (kept, 7) float32 target rows
    hard: np.ndarray      # (kept,) int64 label ids (argmax of y; what accuracy is measured against)
    dropped: dict         # reason -> images dropped


def check_target(name: str) -> None:
    if name not in TARGETS:
        raise FerError(f"train.labels: unknown target {name!r}; allowed: {', '.join(TARGETS)}")


def fused_distribution(labels: np.ndarray, votes: np.ndarray, fer2013_votes: float) -> np.ndarray:
    """The seven emotion votes plus ``fer2013_votes`` for each image's FER2013 label, renormalised."""
    votes = np.asarray(votes, np.float64)
    counts = np.zeros((len(votes), NUM_CLASSES))
    counts[:, _COLUMN_TO_LABEL] = votes[:, :EMOTIONS]
    counts[np.arange(len(labels)), labels] += fer2013_votes
    total = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def make_targets(name: str, labels: np.ndarray, votes: np.ndarray | None, training: bool,
                 fused_votes: float = 0.0) -> Targets:
    """The target ``name`` for one split: ``labels`` FER2013 label ids, ``votes`` (n, 10) FER+
    counts. ``training``: the train split (soft targets keep every image with emotion votes there;
    val and test keep the images with a most-voted label). ``fused_votes``: the weight of
    FER2013's label under ``fused`` (``train.fused_votes``)."""
    check_target(name)
    labels = np.asarray(labels, np.int64)
    eye = np.eye(NUM_CLASSES, dtype=np.float32)
    if name == "fer2013":
        return Targets(np.ones(len(labels), bool), eye[labels], labels, {})
    if votes is None:
        raise FerError(f"train.labels {name} needs the FER+ votes, but the preprocessed data has none: "
                       "rerun `dvc repro` (ingest joins data/raw/fer2013_ferplus_votes.csv)")
    votes = np.asarray(votes)
    if name == "fused":
        if fused_votes <= 0:
            raise FerError("train.labels fused needs train.fused_votes > 0 (FER2013's label as that many votes)")
        dist = fused_distribution(labels, votes, fused_votes)
        # FER2013's label wins a tie: a tiny bonus that moves no other argmax
        hard = (dist + 1e-9 * np.eye(NUM_CLASSES)[labels]).argmax(axis=1).astype(np.int64)
        return Targets(np.ones(len(labels), bool), dist.astype(np.float32), hard, {})
    majority = most_voted(votes)
    no_votes = votes.sum(axis=1) == 0
    if name == "ferplus_majority" or not training:
        keep = majority >= 0
        dropped = {"no_ferplus_votes": int(no_votes.sum()),
                   "no_most_voted_emotion": int((~keep & ~no_votes).sum())}
        y = eye[majority[keep]] if name == "ferplus_majority" else soft_distribution(votes[keep]).astype(np.float32)
        return Targets(keep, y, majority[keep], dropped)
    unknown = mostly_unknown_or_nf(votes) & ~no_votes
    dist = soft_distribution(votes)
    no_emotion = (dist.sum(axis=1) == 0) & ~no_votes & ~unknown
    keep = ~no_votes & ~unknown & ~no_emotion
    y = dist[keep].astype(np.float32)
    return Targets(keep, y, y.argmax(axis=1).astype(np.int64),
                   {"no_ferplus_votes": int(no_votes.sum()), "mostly_unknown_or_not_a_face": int(unknown.sum()),
                    "only_contempt_votes": int(no_emotion.sum())})
