"""Provenance tags: `git_dirty` means sources or params differ from the commit, not outputs."""

import os
import subprocess

from fer_pipeline.tracking import changed_sources, git_info, run_name


def _git(repo, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x"}
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def test_outputs_rewritten_by_dvc_do_not_make_a_run_dirty_but_sources_and_params_do(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    for rel in ("params.yaml", "src/fer_pipeline/training.py", "reports/evaluate/metrics.json",
                "models/mlflow_run.json", "dvc.lock"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("a\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "c")
    # What `dvc repro` does to git-tracked outputs: deletes and rewrites them.
    (tmp_path / "reports/evaluate/metrics.json").write_text("b\n")
    (tmp_path / "models/mlflow_run.json").unlink()
    (tmp_path / "dvc.lock").write_text("b\n")
    info = git_info(tmp_path)
    assert info["git_dirty"] == "false" and len(info["git_commit"]) == 40
    assert not run_name(tmp_path).endswith("-dirty")
    (tmp_path / "params.yaml").write_text("b\n")
    (tmp_path / "src/fer_pipeline/training.py").write_text("b\n")
    info = git_info(tmp_path)
    assert info["git_dirty"] == "true"
    assert info["git_dirty_files"] == "params.yaml, src/fer_pipeline/training.py"
    assert run_name(tmp_path) == info["git_commit"][:7] + "-dirty"


def test_changed_sources_reads_porcelain_lines_and_renames():
    porcelain = (" M reports/evaluate/metrics.json\n D models/model.keras\nR  old.py -> src/new.py\n M dvc.lock\n"
                 " M params.yaml\n")
    assert changed_sources(porcelain) == ["src/new.py", "params.yaml"]
