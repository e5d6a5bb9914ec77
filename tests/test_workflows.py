"""GitHub workflows against the official schema; retraining and sweeps end to end in temp repos."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fer_pipeline.workflow import SMOKE_OVERRIDES, apply_overrides, overrides_as_args, parse_overrides

from conftest import REAL_ARCHIVE, REPO
from helpers import TINY_MODEL

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
needs_data = pytest.mark.skipif(
    not (REPO / "data/raw/fer2013.zip").exists() and not REAL_ARCHIVE.exists(),
    reason="FER2013 archive absent: run `dvc pull` (or place ../shared/data/fer2013.zip) to run this test")


def test_workflows_validate_against_the_github_schema():
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "retrain.yml", "sweep.yml"}
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
    # Team mode: every workflow hands the MLflow server and its credentials to its jobs.
    for wf in WORKFLOWS:
        text = wf.read_text()
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            assert f"{var}: ${{{{ secrets.{var} }}}}" in text, (wf.name, var)


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


def _steps(workflow: str, job: str) -> dict[str, dict]:
    wf = yaml.safe_load((REPO / ".github/workflows" / workflow).read_text())
    return {s.get("name", s.get("uses", "")): s for s in wf["jobs"][job]["steps"]}


class Runner:
    """Runs workflow steps' `run:` scripts as a GitHub runner does: each in a fresh `bash -e`, with
    the job's env, PATH = the runner's PATH plus what earlier steps appended to $GITHUB_PATH."""

    def __init__(self, repo: Path, tmp: Path, env: dict[str, str]):
        venv_bin = str(Path(sys.executable).parent)
        base = [p for p in os.environ["PATH"].split(os.pathsep) if p and p != venv_bin]
        self.repo, self.base_path = repo, os.pathsep.join(base)
        self.files = {k: tmp / k.lower() for k in ("GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")}
        for f in self.files.values():
            f.write_text("")
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTEST"))},
                    **{k: str(v) for k, v in self.files.items()}, **env}

    def run(self, step: dict, extra_env: dict | None = None) -> subprocess.CompletedProcess:
        added = [p for p in self.files["GITHUB_PATH"].read_text().splitlines() if p][::-1]
        env = {**self.env, **(extra_env or {}), "PATH": os.pathsep.join([*added, self.base_path])}
        return subprocess.run(["bash", "-e", "-c", step["run"]], cwd=self.repo, env=env, capture_output=True,
                              text=True, timeout=1500)


def _clean_clone(tmp_path) -> Path:
    """A copy of the repository as a fresh checkout has it, its .venv being this test's venv (what
    scripts/setup.sh would build), and origin/main at its HEAD."""
    from fer_pipeline.workflow import copy_repo

    repo = copy_repo(REPO, tmp_path / "clone")
    (repo / ".venv").symlink_to(Path(sys.prefix))
    with open(repo / ".git/info/exclude", "a") as fh:
        fh.write(".venv\n")
    subprocess.run(["git", "update-ref", "refs/remotes/origin/main", "HEAD"], cwd=repo, check=True)
    return repo


@pytest.mark.slow
@needs_data
def test_ci_smoke_and_retrain_steps_run_as_written_without_the_venv_on_path(tmp_path):
    repo = _clean_clone(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    github = {"GITHUB_RUN_ID": "4242", "GITHUB_REPOSITORY": "team/fer", "GITHUB_SERVER_URL": "https://github.com",
              "GITHUB_WORKFLOW": "retrain", "MLFLOW_TRACKING_URI": uri}
    assert subprocess.run(["bash", "-c", "command -v fer"], env={"PATH": Runner(repo, tmp_path, {}).base_path},
                          capture_output=True).returncode != 0  # the runner's own PATH has no fer

    ci = _steps("ci.yml", "test")
    runner = Runner(repo, tmp_path, github)
    for name in ("Set up the project", "Smoke pipeline (tiny subset, 1 epoch)"):
        r = runner.run(ci[name])
        assert r.returncode == 0, f"ci.yml step {name!r} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    assert "smoke pipeline ok" in r.stdout

    retrain = _steps("retrain.yml", "retrain")
    runner = Runner(repo, tmp_path, github)
    smoke = " ".join(f"{k}={json.dumps(v, separators=(',', ':'))}"
                     for k, v in {**SMOKE_OVERRIDES, **TINY_MODEL}.items())
    for name in ("Set up the project", "Retrain (dvc exp run) and compare with main", "Job summary"):
        r = runner.run(retrain[name], {"OVERRIDES": smoke})
        assert r.returncode == 0, f"retrain.yml step {name!r} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    # What later steps read: the step output that gates the pull request, the summary, the result.
    outputs = dict(line.split("=", 1) for line in runner.files["GITHUB_OUTPUT"].read_text().splitlines())
    result = json.loads((repo / "retrain_result.json").read_text())
    assert outputs["improved"] == str(result["improved"]).lower()
    page = runner.files["GITHUB_STEP_SUMMARY"].read_text()
    assert page.startswith("## Retraining result") and "Rule: promote iff val gain >=" in page
    assert "95% interval" in page and "### Params vs `origin/main`" in page and "train.epochs" in page
    assert "against the FER+ most-voted label" in page and 0 <= result["test_ferplus_accuracy"] <= 1
    assert result["overrides"]["train.epochs"] == 1 and 0 <= result["test_accuracy"] <= 1
    # Both CI runs (smoke, retrain) are in the store the secret names, tagged with the run's URL.
    import mlflow

    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("fer2013").experiment_id])
    assert len(runs) == 2
    assert {r.data.tags["ci_run_url"] for r in runs} == {"https://github.com/team/fer/actions/runs/4242"}


def test_retrain_summary_table_compares_sweep_members():
    from fer_pipeline.workflow import sweep_summary

    results = [
        {"name": "a", "overrides": {"train.ema": 0.999}, "val_accuracy": 0.66, "test_accuracy": 0.67,
         "test_accuracy_ci95": [0.655, 0.685], "val": {"gain_points": 0.1}, "p_value": 0.9, "improved": False,
         "base": "origin/main"},
        {"name": "b", "overrides": {"train.crop_size": 44}, "val_accuracy": 0.69, "test_accuracy": 0.70,
         "test_accuracy_ci95": [0.685, 0.715], "val": {"gain_points": 3.0}, "p_value": 0.001, "improved": True,
         "base": "origin/main"},
    ]
    table = sweep_summary(results)
    rows = [line for line in table.splitlines() if line.startswith("| a ") or line.startswith("| b ")]
    assert rows[0].startswith("| b | `train.crop_size=44` | 69.00% | 70.00% (68.5-71.5) | +3.00 pt, p = 0.001 | yes |")
    assert rows[1].endswith("| no |") and "against `origin/main`" in table


def _kill_queue_workers(repo: Path) -> None:
    """Kill DVC queue workers still running in ``repo`` (Linux /proc), so none outlives the test."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if "queue-worker" in (proc / "cmdline").read_text() and (proc / "cwd").resolve() == repo.resolve():
                os.kill(int(proc.name), 9)
        except OSError:
            continue


@pytest.mark.slow
@needs_data
def test_queued_sweep_gives_one_named_mlflow_run_per_experiment(tmp_path):
    repo = _copy(tmp_path)
    env = _env(tmp_path)
    dvc = [sys.executable, "-m", "dvc"]
    base = overrides_as_args({**SMOKE_OVERRIDES, **TINY_MODEL})
    for lr in ("0.001", "0.003"):
        subprocess.run([*dvc, "exp", "run", "--queue", "-n", f"lr-{lr}", *base, "-S", f"train.learning_rate={lr}"],
                       cwd=repo, env=env, check=True, capture_output=True)
    # `dvc queue start` leaves a daemon holding its stdout/stderr until the worker exits, and a
    # worker whose idle monitor died on DVC's filesystem-broker race (treeverse/dvc#10398) never
    # exits: with captured output the test then hung here. So no pipes, poll, and stop the worker.
    subprocess.run([*dvc, "queue", "start", "-j", "1"], cwd=repo, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 1200
        while True:
            time.sleep(2)
            status = subprocess.run([*dvc, "queue", "status"], cwd=repo, env=env, capture_output=True,
                                    text=True).stdout
            if not any(word in status for word in ("Queued", "Running")) or time.time() > deadline:
                break
    finally:
        subprocess.run([*dvc, "queue", "stop", "--kill"], cwd=repo, env=env, capture_output=True)
        _kill_queue_workers(repo)
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


def test_fer_compare_applies_the_promotion_rule_to_two_revisions(tmp_path):
    # Two commits of hand-built predictions on 100 images: the candidate gets 10 right that the
    # base got wrong and 2 the other way: +8 points, McNemar exact p = 2 * (1 + 12 + 66) / 2^12.
    import shutil

    from fer_pipeline.labels import LABELS
    from fer_pipeline.layout import Evaluate, stage_file

    from helpers import fer_cli

    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(REPO / "dvc.yaml", repo / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["labels"] = "fer2013"   # the hand-built predictions carry FER2013's labels only
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    paths = {k: stage_file("evaluate", k, REPO / "dvc.yaml")
             for k in (Evaluate.VAL_PREDICTIONS, Evaluate.TEST_PREDICTIONS)}
    y = [i % 7 for i in range(100)]
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]

    def commit(right: set[int], message: str) -> None:
        text = "actual,predicted\n" + "".join(
            f"{LABELS[t]},{LABELS[t if i in right else (t + 1) % 7]}\n" for i, t in enumerate(y))
        for key in paths:
            (repo / paths[key]).parent.mkdir(parents=True, exist_ok=True)
            (repo / paths[key]).write_text(text)
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
        subprocess.run([*git, "commit", "-q", "-m", message], cwd=repo, check=True)

    commit(set(range(60)), "base: 60 right")
    commit(set(range(2, 70)), "candidate: 68 right")
    r = fer_cli("compare", "HEAD~1", "HEAD", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("better than HEAD~1: better on val by +8.00 pt, p = 0.0386 < 0.05")
    assert "10 images only the candidate gets right, 2 only the champion" in r.stdout
    back = fer_cli("compare", "HEAD", "HEAD~1", cwd=repo)
    assert back.stdout.startswith("not better than HEAD: val gain -8.00 pt is below the 0.5 pt minimum")
    # A revision this clone lacks (a typo, an experiment run on another machine) is an error, not
    # "no champion predictions", which reads as a first model and says "better".
    for base, candidate, unknown in (("f383478", "HEAD", "f383478"), ("HEAD", "no-such-exp", "no-such-exp")):
        missing = fer_cli("compare", base, candidate, cwd=repo)
        assert missing.returncode != 0 and "better" not in missing.stdout, missing.stdout
        assert f"unknown git revision '{unknown}'" in missing.stderr, missing.stderr
        assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    # A candidate revision without val predictions is never better.
    (repo / paths[Evaluate.VAL_PREDICTIONS]).unlink()
    subprocess.run([*git, "commit", "-qam", "no val"], cwd=repo, check=True)
    empty = fer_cli("compare", "HEAD~1", "HEAD", cwd=repo)
    assert empty.stdout.startswith("not better than HEAD~1: HEAD has no val predictions"), empty.stdout
    # `fer retrain` checks its base before it trains, not after the hour of training.
    early = fer_cli("retrain", "--base", "f383478", "--summary", "s.md", "--result", "r.json", cwd=repo)
    assert early.returncode != 0 and "unknown git revision 'f383478'" in early.stderr, early.stderr
    assert "exp run" not in early.stderr and not (repo / "s.md").exists()
