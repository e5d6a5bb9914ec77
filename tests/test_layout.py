"""Each stage writes one folder of reports, reports/<stage>/, named once in dvc.yaml; code that reads
another stage's files finds them through layout, at this revision and at revisions before the folders."""

import yaml

from fer_pipeline.layout import Evaluate, Train, file_in, stage_file
from fer_pipeline.stage import cmd_paths

from conftest import REPO


def test_every_stage_writes_its_reports_into_its_own_folder():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name in ("ingest", "validate", "preprocess", "train", "evaluate", "export"):
        assert cmd_paths(stages[name]["cmd"])["reports"] == f"reports/{name}", name
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in stages[name]["outs"]]
        assert f"reports/{name}" in outs and not any(o.startswith("reports/") and o != f"reports/{name}" for o in outs)
    assert str(stage_file("evaluate", Evaluate.METRICS, REPO / "dvc.yaml")) == "reports/evaluate/metrics.json"


def test_files_are_found_at_revisions_before_the_stage_folders():
    before = ("python pipeline/evaluate.py metrics=reports/metrics.json details=reports/evaluation.json "
              "val_predictions=reports/eval/val_predictions.csv test_predictions=reports/eval/test_predictions.csv")
    assert file_in("evaluate", cmd_paths(before), Evaluate.VAL_PREDICTIONS) == "reports/eval/val_predictions.csv"
    assert file_in("evaluate", cmd_paths(before), Evaluate.METRICS) == "reports/metrics.json"
    assert file_in("train", {"metrics": "reports/train_metrics.json"}, Train.METRICS) == "reports/train_metrics.json"
    assert file_in("train", {"reports": "reports/train"}, Train.METRICS) == "reports/train/metrics.json"
