"""The photo path's settings: params.yaml's ``predict`` section, read where the command runs, or,
outside a repository, from the copy of params.yaml the package carries (``assets/params.yaml``, a
link to the project's file, copied into a built wheel). params.yaml is their one owner. Used by
``fer predict``, ``fer serve``, ``fer evaluate-photos`` and the face detectors."""

from __future__ import annotations

from pathlib import Path

PACKAGED_PARAMS = Path(__file__).parent / "assets" / "params.yaml"


def predict_defaults() -> dict:
    """params.yaml's ``predict`` section, validated: the working directory's file, else the package's."""
    from .params import load

    path = Path("params.yaml") if Path("params.yaml").exists() else PACKAGED_PARAMS
    return load(["predict"], path)["predict"]


def photo_settings(detector: str | None = None, margin: float | None = None,
                   min_confidence: float | None = None) -> dict:
    """The photo path's settings (``predict_defaults``), with each flag given in place of its key."""
    given = {"detector": detector, "margin": margin, "min_confidence": min_confidence}
    return {**predict_defaults(), **{k: v for k, v in given.items() if v is not None}}
