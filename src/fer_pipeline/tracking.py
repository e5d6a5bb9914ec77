"""MLflow plumbing: tracking URI, experiment, run naming, reproducibility tags, run hand-over."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from .labels import LABELS

DEFAULT_DB = "mlflow.db"


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


# Paths the pipeline itself writes: DVC removes and rewrites the git-tracked ones while it runs,
# so a difference there says nothing about the sources or params of the run.
OUTPUT_PREFIXES = ("models/", "reports/", "dvc.lock")


def changed_sources(porcelain: str) -> list[str]:
    """Paths in ``git status --porcelain`` output that are sources or params, not pipeline outputs."""
    paths = []
    for line in porcelain.splitlines():
        if len(line) < 4:
            continue
        path = line[3:].split(" -> ")[-1].strip('"')
        if not path.startswith(OUTPUT_PREFIXES):
            paths.append(path)
    return paths


def git_info(root: str | os.PathLike = ".") -> dict[str, str]:
    """``git_commit``, and ``git_dirty``: whether any tracked source or params file differs from
    that commit (pipeline outputs under models/, reports/ and dvc.lock do not count)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  check=True).stdout
        except (subprocess.CalledProcessError, FileNotFoundError):
            return ""

    commit = git("rev-parse", "HEAD").strip()
    changed = changed_sources(git("status", "--porcelain", "--untracked-files=no")) if commit else []
    info = {"git_commit": commit or "unknown", "git_dirty": str(bool(changed)).lower()}
    if changed:
        info["git_dirty_files"] = ", ".join(changed)[:500]
    return info


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested params as MLflow param names: {'a': {'b': 1}} -> {'a.b': 1}; lists comma-joined."""
    out: dict = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = value
    return out


def ci_tags() -> dict[str, str]:
    """The GitHub Actions run that made this run, when there is one."""
    env = os.environ
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        url = f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
        return {"ci_run_url": url, "ci_workflow": env.get("GITHUB_WORKFLOW", "")}
    return {}


def machine_tags() -> dict[str, str]:
    """The CPU a run's minutes were measured on (machines of one kind differ 2x in speed):
    ``cpu_model`` (Linux's /proc/cpuinfo ``model name``, else ``platform.processor()``) and
    ``cpu_count``, the cores this process may use."""
    import platform

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu_model": model or platform.processor() or "unknown", "cpu_count": str(cores)}


def run_name(root: str | os.PathLike = ".") -> str:
    """The DVC experiment name when run by ``dvc exp run``, else the short git commit."""
    exp = os.environ.get("DVC_EXP_NAME")
    if exp:
        return exp
    info = git_info(root)
    short = info["git_commit"][:7] if info["git_commit"] != "unknown" else "nogit"
    return short + ("-dirty" if info["git_dirty"] == "true" else "")


def data_md5(files: list[str | os.PathLike]) -> str:
    """One md5 over the bytes of ``files`` (the preprocessed splits a run trained on): the same
    data gives the same tag on any machine (preprocess output is byte-for-byte reproducible)."""
    import hashlib

    h = hashlib.md5()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def write_run_info(path: str | os.PathLike, run_id: str, experiment_id: str) -> None:
    """The training run's id, for evaluate. No tracking URI: each machine uses its own (``tracking_uri``)."""
    from .fsutil import write_json

    write_json(path, {"run_id": run_id, "experiment_id": experiment_id})


def read_run_info(path: str | os.PathLike) -> dict:
    from .errors import FerError

    p = Path(path)
    if not p.exists():
        raise FerError(f"{p} not found: run the train stage first (`dvc repro train`)")
    return json.loads(p.read_text())


# The packages a logged model needs besides MLflow: Keras and the backend it ran on.
BACKEND_PACKAGES = {"tensorflow": ("tensorflow-cpu", "tensorflow"), "jax": ("jax", "jaxlib")}


def model_requirements() -> list[str]:
    """``keras==X`` and the installed backend's packages, pinned: given to MLflow explicitly, because
    inferring them loads the model again in a child process, most of ``log_model``'s time (the
    training and registry tests' ``--durations``)."""
    import importlib.metadata as md

    import keras

    pins = [f"keras=={md.version('keras')}"]
    for dist in BACKEND_PACKAGES.get(keras.backend.backend(), ()):
        try:
            pins.append(f"{dist}=={md.version(dist)}")
        except md.PackageNotFoundError:
            continue
        if dist == "tensorflow-cpu":
            break   # tensorflow-cpu is the whole of TensorFlow
    return pins


def log_model(model, name: str = "model") -> str:
    """Log a Keras model with an explicit signature (no input example: see docs/known-issues.md) and
    its requirements (``model_requirements``)."""
    import mlflow
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 48, 48, 1), "pixels")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(LABELS)), "probs")]))
    info = mlflow.keras.log_model(model, name=name, signature=signature, pip_requirements=model_requirements())
    return info.model_uri

