"""Test helpers: tiny models, real photos from scikit-image, free ports, waiting for servers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


# The end-to-end tests' model: the default architecture at a tiny width (dvc exp run -S / smoke
# overrides; leaf keys, which DVC's -S takes one by one). Every stage still runs as in production.
TINY_MODEL = {"train.model.bn_vgg.widths": [8, 16], "train.model.bn_vgg.convs_per_stage": 1,
              "train.model.bn_vgg.dense": 16}


def stage_cmd(stage: str) -> list[str]:
    """The stage's command as dvc.yaml gives it (its script and name=path arguments), with this
    interpreter, to run in a directory laid out like the repository."""
    from fer_pipeline.stage import declared_paths

    args = [f"{k}={v}" for k, v in declared_paths(stage, REPO / "dvc.yaml").items()]
    return [sys.executable, str(REPO / "pipeline" / f"{stage}.py"), *args]


def tiny_model_file(path: Path) -> Path:
    from fer_pipeline.models import build_model

    build_model("bn_vgg", 48, widths=(8, 16), convs_per_stage=1, dense=0, dropout=0.0).save(path)
    return path


def repo_params() -> dict:
    """The repository's params.yaml, validated (as a stage sees it, all sections)."""
    from fer_pipeline.params import load

    return load(path=REPO / "params.yaml")


def astronaut_gray() -> np.ndarray:
    """scikit-image's astronaut (one frontal face), as grayscale uint8."""
    import cv2
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)


def write_png(path: Path, img: np.ndarray) -> Path:
    import cv2

    cv2.imwrite(str(path), img)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


def fer_cli(*args: str, env=None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fer_pipeline.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)
