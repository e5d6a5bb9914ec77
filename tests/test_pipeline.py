"""The DVC pipeline for real: stage scripts, a smoke `dvc repro` in a temp repo, the real archive."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REAL_ARCHIVE, REPO
from fer_pipeline.data import ingest
from fer_pipeline.fsutil import load_params
from fer_pipeline.validation import validate

ARCHIVE = REPO / "data/raw/fer2013.zip" if (REPO / "data/raw/fer2013.zip").exists() else REAL_ARCHIVE
needs_archive = pytest.mark.skipif(
    not ARCHIVE.exists(), reason=f"FER2013 archive absent (looked for data/raw/fer2013.zip and {REAL_ARCHIVE}); "
                                 "run `dvc pull` to get it")

TRUE_COUNTS = {
    "train": {"total": 28709, "angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "neutral": 4965,
              "sad": 4830, "surprise": 3171},
}
TEST_FOLDER = {"angry": 958, "disgust": 111, "fear": 1024, "happy": 1774, "neutral": 1233, "sad": 1247,
               "surprise": 831}


def test_dvc_yaml_stages_and_params_sections_agree():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    params = load_params(REPO / "params.yaml")
    assert list(dvc["stages"]) == ["ingest", "validate", "preprocess", "train", "evaluate", "export"]
    for stage in dvc["stages"]:
        assert stage in params
        assert (REPO / "pipeline" / f"{stage}.py").exists()


def test_stage_scripts_import_the_package_of_their_own_copy(tmp_path):
    # A `dvc exp run --temp` or queued experiment runs in a copy of the repo while the venv's
    # editable install points at the original: the stage must still run its copy's code.
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(REPO / "pipeline", copy / "pipeline", symlinks=True)
    shutil.copytree(REPO / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (copy / "pipeline" / "where.py").write_text("import fer_pipeline\nprint(fer_pipeline.__file__)\n")
    out = subprocess.run([sys.executable, "pipeline/where.py"], cwd=copy, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert Path(out).resolve() == (copy / "src" / "fer_pipeline" / "__init__.py").resolve()


def test_validate_stage_exits_non_zero_with_one_line_on_hard_failure(fer_fixture, tmp_path, tiny_validate_cfg):
    work = tmp_path / "w"
    (work / "reports").mkdir(parents=True)
    from fer_pipeline.data import run_ingest

    run_ingest(str(fer_fixture.zip), str(work / "data/interim"), str(work / "reports/ingest.json"), workers=1)
    bad = {**tiny_validate_cfg, "class_share_range": [0.5, 0.6]}
    (work / "params.yaml").write_text(yaml.safe_dump({"validate": bad}))
    r = subprocess.run([sys.executable, str(REPO / "pipeline/validate.py")], cwd=work, capture_output=True, text=True)
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: validation failed:")
    assert json.loads((work / "reports/validation.json").read_text())["success"] is False


def test_ingest_stage_reports_a_missing_archive_in_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"ingest": {"input": "data/raw/fer2013.zip", "max_per_class": 0, "seed": 0, "workers": 1}}))
    r = subprocess.run([sys.executable, str(REPO / "pipeline/ingest.py")], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip().startswith("error: input not found: data/raw/fer2013.zip; get it with `dvc pull`")
    assert "Traceback" not in r.stderr and not (tmp_path / "data/interim").exists()


@needs_archive
def test_real_archive_ingest_and_validate_give_the_true_counts():
    images, manifest, report = ingest(ARCHIVE, progress=False)
    summary = validate(images, manifest, load_params(REPO / "params.yaml")["validate"], report.summary())
    assert summary["success"], [c for c in summary["checks"] if not c["success"]]
    counts = summary["counts"]
    assert counts["train"] == TRUE_COUNTS["train"]
    assert counts["val"]["total"] == 3589 and counts["test"]["total"] == 3589
    for name, n in TEST_FOLDER.items():
        assert counts["val"][name] + counts["test"][name] == n, name
    assert report.summary()["skipped_total"] == 0
    soft = summary["soft"]
    assert soft["duplicates_within_split"]["count"] > 1000 and soft["duplicates_across_splits"]["count"] > 0
    assert soft["near_blank"]["count"] > 0


@pytest.mark.slow
@needs_archive
def test_smoke_dvc_repro_runs_every_stage_in_a_temp_repo(tmp_path, monkeypatch):
    from fer_pipeline.workflow import smoke

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    metrics = smoke(REPO, tmp_path / "repo")
    repo = tmp_path / "repo"
    assert 0 <= metrics["test"]["accuracy"] <= 1 and metrics["test"]["per_class"]["sad"]["support"] == 10
    for f in ("reports/model_card.md", "reports/figures/confusion_test.png", "reports/validation.html",
              "reports/augmentation_preview.png", "models/model.keras", "dvc.lock"):
        assert (repo / f).exists(), f
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=repo, capture_output=True, text=True)
    assert "up to date" in status.stdout
    import mlflow

    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    run = client.search_runs([client.get_experiment_by_name("fer2013").experiment_id])[0]
    assert "test_accuracy" in run.data.metrics and "val_accuracy" in run.data.metrics
    assert run.data.tags["registry_alias"] == "champion"
