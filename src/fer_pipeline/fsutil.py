"""Small filesystem helpers: atomic writes, JSON output, the preprocessed splits."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; rename it onto ``path`` only if the block succeeds.

    An interrupted or failing writer therefore never leaves a half-written file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_split(data_dir: str | os.PathLike, split: str):
    """``(x, y)`` of ``<data_dir>/<split>.npz`` (preprocess output): uint8 (n, 48, 48, 1), int64."""
    import numpy as np

    from .errors import DataError

    path = Path(data_dir) / f"{split}.npz"
    if not path.exists():
        raise DataError(f"{path} not found: run the preprocess stage first (`dvc repro preprocess`)")
    with np.load(path) as z:
        return z["x"], z["y"]


def load_votes(data_dir: str | os.PathLike, split: str):
    """The FER+ votes (n, 10) of ``<data_dir>/<split>.npz``, in ``load_split``'s order; None when
    the file predates the votes."""
    import numpy as np

    with np.load(Path(data_dir) / f"{split}.npz") as z:
        return z["votes"] if "votes" in z.files else None
