"""The files inside each stage's folders. dvc.yaml names the folders once per stage: ``reports=``
(``reports/<stage>/``, git-tracked, ``cache: false``) and, for the two stages that draw FER2013
faces, ``faces=`` (``data/figures/<stage>/``, DVC-cached, never committed). The stage function
names the files inside from here, and code that reads another stage's files does the same."""

from __future__ import annotations

from pathlib import Path


class Ingest:
    SUMMARY = "summary.json"


class Validate:
    METRICS = "metrics.json"
    DETAILS = "details.json"
    PAGE = "validation.html"


class Preprocess:
    SUMMARY = "summary.json"


class Train:
    METRICS = "metrics.json"
    HISTORY = "history.json"
    CURVES = "training_curves.png"
    PREVIEW = "augmentation_preview.png"      # faces=


class Evaluate:
    METRICS = "metrics.json"                  # the headline figures: dvc.yaml's top-level metrics
    DETAILS = "evaluation.json"
    CARD = "model_card.md"
    TEST_PREDICTIONS = "test_predictions.csv"
    VAL_PREDICTIONS = "val_predictions.csv"   # the paired comparison of a later candidate reads these
    CONFUSION = "confusion_test.png"
    F1 = "f1_per_class.png"
    RELIABILITY = "reliability_test.png"
    GRID_CORRECT = "test_correct.png"         # faces=
    GRID_WRONG = "test_misclassified.png"     # faces=


class Export:
    REPORT = "tflite.json"


# Revisions before the stage folders passed each file as its own argument: the files that code
# reads at older revisions (stored predictions, experiment records) under their argument names then.
_BEFORE_FOLDERS = {
    "evaluate": {Evaluate.METRICS: "metrics", Evaluate.DETAILS: "details",
                 Evaluate.VAL_PREDICTIONS: "val_predictions", Evaluate.TEST_PREDICTIONS: "test_predictions"},
    "train": {Train.METRICS: "metrics"},
    "export": {Export.REPORT: "report"},
}


def file_in(stage: str, paths: dict[str, str], name: str) -> str:
    """The path of ``name`` among a stage's ``name=path`` arguments (its dvc.yaml ``cmd``, at this
    or an older revision), e.g. ``reports/evaluate/metrics.json``."""
    if "reports" in paths:
        return f"{paths['reports']}/{name}"
    return paths[_BEFORE_FOLDERS[stage][name]]


def stage_file(stage: str, name: str, dvc_yaml: str | Path = "dvc.yaml") -> Path:
    """A file of a stage's ``reports=`` folder as the working tree's dvc.yaml places it."""
    from .stage import declared_paths

    return Path(file_in(stage, declared_paths(stage, dvc_yaml), name))
