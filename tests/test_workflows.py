"""GitHub workflows against the official schema; retraining and sweeps end to end in temp repos."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REAL_ARCHIVE, REPO
from fer_pipeline.workflow import SMOKE_OVERRIDES, apply_overrides, overrides_as_args, parse_overrides

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
needs_data = pytest.mark.skipif(
    not (REPO / "data/raw/fer2013.zip").exists() and not REAL_ARCHIVE.exists(),
    reason="FER2013 archive absent: run `dvc pull` (or place ../shared/data/fer2013.zip) to run this test")


def test_workflows_validate_against_the_github_schema():
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "retrain.yml"}
    r = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                        *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ci_runs_the_readme_test_command_and_retrain_calls_fer_retrain():
    ci = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    runs = [s.get("run", "") for s in ci["jobs"]["test"]["steps"]]
    assert "./test.sh" in runs
    assert "./test.sh" in (REPO / "README.md").read_text() and "exec ./test.sh" in (REPO / ".ci/run").read_text()
    retrain = yaml.safe_load((REPO / ".github/workflows/retrain.yml").read_text())
    triggers = retrain[True] if True in retrain else retrain["on"]  # YAML 1.1 reads `on` as True
    assert {"schedule", "workflow_dispatch", "push"} <= set(triggers)
    steps = retrain["jobs"]["retrain"]["steps"]
    assert any("fer retrain" in s.get("run", "") for s in steps)
    assert any(s.get("uses", "").startswith("peter-evans/create-pull-request") for s in steps)


def test_overrides_round_trip(tmp_path):
    assert parse_overrides(["train.epochs=60", "validate.class_share_range=[0.1, 0.2]"]) == {
        "train.epochs": 60, "validate.class_share_range": [0.1, 0.2]}
    assert overrides_as_args({"train.epochs": 1}) == ["-S", "train.epochs=1"]
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text())
    apply_overrides(params, SMOKE_OVERRIDES)
    loaded = yaml.safe_load(params.read_text())
    assert loaded["train"]["epochs"] == 1 and loaded["validate"]["split_rows"]["val"] == [60, 80]


def _env(tmp_path):
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def _copy(tmp_path) -> Path:
    from fer_pipeline.workflow import copy_repo

    repo = copy_repo(REPO, tmp_path / "repo")
    assert (repo / "data/raw/fer2013.zip").exists()
    return repo


@pytest.mark.slow
@needs_data
def test_retrain_smoke_end_to_end_writes_diff_and_decision(tmp_path):
    repo = _copy(tmp_path)
    r = subprocess.run([sys.executable, "-m", "fer_pipeline.cli", "retrain", "--smoke", "--name", "smoke-exp",
                        "--summary", str(tmp_path / "s.md"), "--result", str(tmp_path / "r.json")],
                       cwd=repo, env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((tmp_path / "r.json").read_text())
    summary = (tmp_path / "s.md").read_text()
    assert "### Metrics vs `main`" in summary and "test.accuracy" in summary
    assert "train.epochs" in summary  # the params diff shows the override
    assert isinstance(result["test_accuracy"], float)
    base = json.loads((REPO / "reports/metrics.json").read_text())["test"]["accuracy"] \
        if (REPO / "reports/metrics.json").exists() else None
    assert result["base_test_accuracy"] == base
    assert result["improved"] == (base is None or result["test_accuracy"] > base)
    # The experiment is a named MLflow run with its params.
    import mlflow

    runs = mlflow.MlflowClient(_env(tmp_path)["MLFLOW_TRACKING_URI"]).search_runs(
        [mlflow.MlflowClient(_env(tmp_path)["MLFLOW_TRACKING_URI"]).get_experiment_by_name("fer2013").experiment_id])
    assert [run.info.run_name for run in runs] == ["smoke-exp"]
    assert runs[0].data.params["train.epochs"] == "1"


@pytest.mark.slow
@needs_data
def test_queued_sweep_gives_one_named_mlflow_run_per_experiment(tmp_path):
    repo = _copy(tmp_path)
    env = _env(tmp_path)
    dvc = [sys.executable, "-m", "dvc"]
    base = overrides_as_args(SMOKE_OVERRIDES)
    for lr in ("0.001", "0.003"):
        subprocess.run([*dvc, "exp", "run", "--queue", "-n", f"lr-{lr}", *base, "-S", f"train.learning_rate={lr}"],
                       cwd=repo, env=env, check=True, capture_output=True)
    subprocess.run([*dvc, "queue", "start", "-j", "1"], cwd=repo, env=env, check=True, capture_output=True)
    deadline = time.time() + 1200
    while True:
        status = subprocess.run([*dvc, "queue", "status"], cwd=repo, env=env, capture_output=True, text=True).stdout
        if not any(word in status for word in ("Queued", "Running")) or time.time() > deadline:
            break
        time.sleep(3)
    subprocess.run([*dvc, "queue", "stop"], cwd=repo, env=env, capture_output=True)
    assert status.count("Success") == 2, status
    shown = json.loads(subprocess.run([*dvc, "exp", "show", "--json"], cwd=repo, env=env, check=True,
                                      capture_output=True, text=True).stdout)
    names = {e.get("name") for rev in shown for e in (rev.get("experiments") or []) if e}
    assert {"lr-0.001", "lr-0.003"} <= names
    import mlflow

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("fer2013").experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == {"lr-0.001", "lr-0.003"}
    assert by_name["lr-0.003"].data.params["train.learning_rate"] == "0.003"
    assert "test_accuracy" in by_name["lr-0.001"].data.metrics
