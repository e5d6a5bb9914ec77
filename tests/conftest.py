"""Shared fixtures: a tiny FER2013 look-alike in all three input forms, built fresh in a temp dir.

Images are synthetic (no FER2013 pixels are ever committed): each face is a distinct smooth
pattern, JPEG-encoded once. The CSV form carries the decoded pixels of those same JPEGs, so all
three forms describe the same images exactly.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from fer_pipeline.labels import CSV_ID_TO_NAME, FERPLUS_COLUMNS, FERPLUS_TO_LABEL, LABELS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_ARCHIVE = REPO.parent / "shared" / "data" / "fer2013.zip"
USAGES = ("Training", "PublicTest", "PrivateTest")
NAME_TO_CSV_ID = {name: i for i, name in CSV_ID_TO_NAME.items()}
LABEL_TO_FERPLUS = {label: col for col, label in FERPLUS_TO_LABEL.items()}


def fixture_votes(k: int, name: str) -> list[int] | None:
    """FER+ votes (FERPLUS_COLUMNS order) of fixture image ``k`` with FER2013 label ``name``: most
    agree with the label, some have another most-voted emotion, a tie, a not-a-face majority, or
    no votes at all (as FER+ publishes for some images)."""
    if k == 7:
        return None
    v = dict.fromkeys(FERPLUS_COLUMNS, 0)
    own, other = LABEL_TO_FERPLUS[name], "happiness" if name != "happy" else "neutral"
    if k == 5:
        v.update({"NF": 6, own: 4})
    elif k % 9 == 4:
        v.update({other: 7, own: 3})
    elif k % 9 == 8:
        v.update({own: 4, other: 4, "contempt": 1, "unknown": 1})
    else:
        v.update({own: 7, other: 2, "contempt": 1})
    return [v[c] for c in FERPLUS_COLUMNS]


def synthetic_face(seed: int) -> np.ndarray:
    """A 48x48 uint8 image with structure (so augmentation visibly changes it)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:48] / 47.0
    a, b, c = rng.uniform(0.5, 3, 3)
    img = 128 + 60 * np.sin(a * 6 * xx + b * 3 * yy) + 40 * np.cos(c * 5 * yy) + rng.normal(0, 8, (48, 48))
    img[int(rng.integers(8, 30)):][:, :4] = 0  # an asymmetric dark bar: flips are visible
    return np.clip(img, 0, 255).astype(np.uint8)


def jpeg_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


class FerFixture:
    """Paths of the same tiny data set as a zip, as folders and as a CSV; plus its truth."""

    def __init__(self, root: Path, per_class: int = 3):
        self.root = root
        self.entries: list[tuple[str, str, str, bytes]] = []  # (relative path, usage, class, jpeg)
        seed = 0
        for usage in USAGES:
            top = "train" if usage == "Training" else "test"
            for name in LABELS:
                for _ in range(per_class):
                    seed += 1
                    data = jpeg_bytes(synthetic_face(seed))
                    self.entries.append((f"{top}/{name}/{usage}_{seed:05d}.jpg", usage, name, data))
        self.folders = root / "folders"
        for rel, _, _, data in self.entries:
            p = self.folders / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        self.zip = root / "fer2013.zip"
        self.write_zip(self.zip, self.entries)
        self.csv = root / "fer2013.csv"
        self.write_csv(self.csv, [(NAME_TO_CSV_ID[n], " ".join(map(str, decoded(d).ravel())), u)
                                  for _, u, n, d in self.entries])
        # The FER+ votes joined to the file names (zip, folders) and to the CSV rows, in entry order.
        self.votes = {rel: fixture_votes(k, n) for k, (rel, _, n, _) in enumerate(self.entries)}
        self.votes_csv = self.write_votes(root / "votes.csv", self.entries, self.votes)

    @staticmethod
    def write_votes(path: Path, entries, votes: dict) -> Path:
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "fer2013_row", "usage", *FERPLUS_COLUMNS])
            for row, (rel, usage, _, _) in enumerate(entries):
                v = votes.get(rel, "absent")
                if v == "absent":
                    continue
                # FER+ publishes no votes (and no row number) for some images, as the real file does
                w.writerow([rel, "" if v is None else row, usage, *(v or [""] * len(FERPLUS_COLUMNS))])
        return path

    @staticmethod
    def write_zip(path: Path, entries, extra: dict[str, bytes] | None = None) -> Path:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for rel, _, _, data in entries:
                zf.writestr(rel, data)
            for rel, data in (extra or {}).items():
                zf.writestr(rel, data)
        return path

    @staticmethod
    def write_csv(path: Path, rows) -> Path:
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["emotion", "pixels", "Usage"])
            w.writerows(rows)
        return path

    def copy_folders(self, dst: Path) -> Path:
        shutil.copytree(self.folders, dst)
        return dst


@pytest.fixture(scope="session")
def fer_fixture(tmp_path_factory) -> FerFixture:
    return FerFixture(tmp_path_factory.mktemp("fer"))


@pytest.fixture
def tiny_validate_cfg() -> dict:
    """Validation bounds that suit the tiny fixture (3 images per class and split)."""
    return {
        "split_rows": {"train": [21, 21], "val": [21, 21], "test": [21, 21]},
        "class_share_range": [0.1, 0.2],
        "pixel_mean_range": [60, 200],
        "pixel_std_range": [10, 120],
        "near_blank_std": 3.0,
        "ferplus_votes_per_image": [9, 10],
        "ferplus_max_without_votes": 0.05,
    }


@pytest.fixture(autouse=True)
def _mlflow_uris_do_not_leak_between_tests():
    """MLflow's set_tracking_uri / set_registry_uri also export MLFLOW_TRACKING_URI /
    MLFLOW_REGISTRY_URI for subprocesses: restore both after each test, so that no test (nor the
    servers and stages it starts) inherits another test's temp store."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    import sys

    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])


# Made-With-ML's split of tests into code, data and model, by file: `pytest -m data` runs the data
# tests alone (every test gets exactly one of the three).
KIND = {
    "data": {"test_data", "test_validation", "test_preprocess", "test_targets", "test_labels"},
    "model": {"test_models", "test_training", "test_behaviour", "test_export", "test_augment"},
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        kind = next((k for k, mods in KIND.items() if module in mods), "code")
        item.add_marker(getattr(pytest.mark, kind))
