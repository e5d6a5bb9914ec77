"""The photo path's settings: params.yaml's ``predict`` section, read where the command runs, or
the package's copy of it (``DEFAULTS``, held equal to params.yaml by a test) outside a repository.
Used by ``fer predict``, ``fer serve``, ``fer evaluate-photos`` and the face detectors."""

from __future__ import annotations

from pathlib import Path

# What `fer predict`, `fer serve` and `fer evaluate-photos` use when params.yaml is not at hand (run
# outside the repository); tests hold them equal to params.yaml's `predict` section.
DEFAULTS = {"detector": "yunet", "margin": 0.1, "min_confidence": 0.4, "detector_threshold": 0.6,
            "detector_min_side": 640, "video_fps": 5, "smooth_frames": 3}


def photo_settings(detector: str | None = None, margin: float | None = None,
                   min_confidence: float | None = None) -> dict:
    """The photo path's settings (params.yaml's ``predict`` section, in the working directory, else
    ``DEFAULTS``), with each flag given in place of its key."""
    base = dict(DEFAULTS)
    if Path("params.yaml").exists():
        from .params import load

        base = load(["predict"])["predict"]
    given = {"detector": detector, "margin": margin, "min_confidence": min_confidence}
    return {**base, **{k: v for k, v in given.items() if v is not None}}
