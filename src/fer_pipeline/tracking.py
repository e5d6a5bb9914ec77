"""MLflow plumbing: tracking URI, experiment, run naming, reproducibility tags, run hand-over."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

DEFAULT_DB = "mlflow.db"


def repo_root(start: str | os.PathLike = ".") -> Path:
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True,
                             text=True, check=True)
        return Path(out.stdout.strip())
    except (subprocess.CalledProcessError, FileNotFoundError):
        return Path(start).resolve()


def main_workspace(root: str | os.PathLike = ".") -> Path:
    """The user's repository, also when DVC runs a queued experiment in ``.dvc/tmp/exps/...``."""
    root = Path(root).resolve()
    parts = root.parts
    for i in range(len(parts) - 3):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return root


def tracking_uri(root: str | os.PathLike = ".") -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<repo root>/mlflow.db`` (one store for
    ``dvc repro``, ``dvc exp run`` and queued experiments alike)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{main_workspace(root) / DEFAULT_DB}"


def _artifact_root(uri: str) -> str | None:
    """Artifacts of a sqlite store go in ``mlartifacts/`` beside the database file."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    return None


def setup(experiment: str, root: str | os.PathLike = ".") -> str:
    """Point MLflow at the store and select (creating if needed) the experiment; returns the URI."""
    import mlflow

    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    # Registry on the same store (a sqlite URI serves both).
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=_artifact_root(uri))
    mlflow.set_experiment(experiment)
    return uri


def git_info(root: str | os.PathLike = ".") -> dict[str, str]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (subprocess.CalledProcessError, FileNotFoundError):
            return ""

    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if commit else False
    return {"git_commit": commit or "unknown", "git_dirty": str(dirty).lower()}


def run_name(root: str | os.PathLike = ".") -> str:
    """The DVC experiment name when run by ``dvc exp run``, else the short git commit."""
    exp = os.environ.get("DVC_EXP_NAME")
    if exp:
        return exp
    info = git_info(root)
    short = info["git_commit"][:7] if info["git_commit"] != "unknown" else "nogit"
    return short + ("-dirty" if info["git_dirty"] == "true" else "")


def data_md5(root: str | os.PathLike = ".", dvc_file: str = "data/raw/fer2013.zip.dvc") -> str:
    """md5 of the raw archive as DVC tracks it (``.dvc`` file, else ``dvc.lock``)."""
    root = Path(root)
    path = root / dvc_file
    if path.exists():
        outs = (yaml.safe_load(path.read_text()) or {}).get("outs", [])
        if outs:
            return str(outs[0].get("md5", "unknown"))
    lock = root / "dvc.lock"
    if lock.exists():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for dep in stages.get("ingest", {}).get("deps", []):
            if str(dep.get("path", "")).startswith("data/raw"):
                return str(dep.get("md5", "unknown"))
    return "unknown"


def write_run_info(path: str | os.PathLike, run_id: str, experiment_id: str, uri: str) -> None:
    from .fsutil import write_json

    write_json(path, {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": uri})


def read_run_info(path: str | os.PathLike) -> dict:
    from .errors import FerError

    p = Path(path)
    if not p.exists():
        raise FerError(f"{p} not found: run the train stage first (`dvc repro train`)")
    return json.loads(p.read_text())
