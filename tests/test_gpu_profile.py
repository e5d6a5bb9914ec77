"""scripts/gpu_profile.py: the lossless data packing for the GPU machine, and its training run end to
end (on the TensorFlow backend here; the GPU machine runs the same code on JAX)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, synthetic_face

sys.path.insert(0, str(REPO / "scripts"))
import gpu_profile  # noqa: E402

SIZES = {"train": 150, "val": 40, "test": 37}  # not multiples of a mosaic row


@pytest.fixture
def processed(tmp_path):
    """Preprocess-stage-like .npz splits of synthetic faces; the label decides the pattern."""
    rng = np.random.default_rng(0)
    out = tmp_path / "processed"
    out.mkdir()
    for i, (split, n) in enumerate(SIZES.items()):
        y = rng.integers(0, 7, n)
        x = np.stack([synthetic_face(1000 * i + k) for k in range(n)])[..., None]
        np.savez(out / f"{split}.npz", x=x, y=y, row_id=np.arange(n))
    return out


def test_pack_round_trip_is_exact(processed, tmp_path):
    gpu_profile.pack(processed, tmp_path / "packed")
    for split, n in SIZES.items():
        x, y = gpu_profile.unpack(tmp_path / "packed", split)
        with np.load(processed / f"{split}.npz") as d:
            assert x.shape == (n, 48, 48, 1) and x.dtype == np.uint8
            np.testing.assert_array_equal(x, d["x"])
            np.testing.assert_array_equal(y, d["y"])


def _run(*args, cwd):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_profile.py"), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


TINY = ["-S", "train.gpu_overrides.model.bn_vgg={widths: [4, 8], convs_per_stage: 1, dropout: 0.0, dense: 0}",
        "-S", "train.gpu_overrides.epochs=2", "-S", "train.gpu_overrides.batch_size=32",
        "-S", "train.crop_size=40", "-S", "train.ema=0.9", "-S", "preprocess.augment.erasing_prob=0.5"]


def test_train_runs_the_profile_and_saves_the_best_model(processed, tmp_path):
    gpu_profile.pack(processed, tmp_path / "packed")
    out = tmp_path / "out"
    r = _run("train", str(tmp_path / "packed"), str(out), "--budget-s", "10000", "--rate-steps", "1",
             "--no-baseline", "--no-bf16", *TINY, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "gpu_profile.json").read_text())
    assert s["epochs_planned"] == s["epochs_run"] == 2 and len(s["history"]) == 2
    assert s["train"]["crop_size"] == 40 and s["train"]["ema"] == 0.9 and s["augment"]["erasing_prob"] == 0.5
    assert s["train"]["model"]["bn_vgg"]["widths"] == [4, 8]  # the gpu profile, with the overrides
    assert s["best_val_accuracy"] == max(row["val_accuracy"] for row in s["history"])
    # The parts join into the saved best-on-val model: its val accuracy is the reported one.
    import keras

    model_file = tmp_path / "model.keras"
    model_file.write_bytes(b"".join((out / p).read_bytes() for p in s["model_parts"]))
    model = keras.models.load_model(model_file)
    assert model.count_params() == s["params"]
    x, y = gpu_profile.unpack(tmp_path / "packed", "val")
    acc = float(np.mean(model.predict(x.astype(np.float32), verbose=0).argmax(1) == y))
    assert acc == pytest.approx(s["val_accuracy"], abs=1e-4)


def test_a_misspelt_override_stops_with_one_line(processed, tmp_path):
    r = _run("train", str(processed), str(tmp_path / "out"), "-S", "train.modle=bn_vgg", cwd=tmp_path)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "train.modle: unknown key; did you mean train.model?" in r.stderr
    assert not (tmp_path / "out").exists()



def _top_level_imports(path) -> set[str]:
    """Modules a file imports when it is loaded (imports inside functions and TYPE_CHECKING blocks
    run later or never); the package's relative imports as ``fer_pipeline.<name>``."""
    import ast

    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else []:
            if isinstance(sub, ast.Import):
                found |= {a.name for a in sub.names}
            elif isinstance(sub, ast.ImportFrom):
                found.add(f"fer_pipeline.{sub.module}" if sub.level else sub.module)
    return found


def test_the_script_loads_no_tensorflow():
    """The GPU machine has no TensorFlow: what the script loads with it (the script, then the package
    modules it and they import at load time) must not import it."""
    pending, seen = [REPO / "scripts" / "gpu_profile.py"], set()
    for name in ("training", "models", "metrics", "params", "errors", "augment"):  # imported inside functions
        pending.append(REPO / "src" / "fer_pipeline" / f"{name}.py")
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for mod in _top_level_imports(path):
            assert mod.split(".")[0] != "tensorflow", f"{path.name} imports {mod} at load time"
            if mod.startswith("fer_pipeline."):
                pending.append(REPO / "src" / "fer_pipeline" / f"{mod.split('.')[1]}.py")
    assert len(seen) >= 6


AUG_OFF = {"enabled": True, "flip": False, "rotation": 0.0, "zoom": 0.0, "translation": 0.0, "erasing_prob": 0.0,
           "erasing_max_area": 0.2, "mixup_alpha": 0.0}


def _augment(x: np.ndarray, crop: int = 48, **ranges) -> np.ndarray:
    layer = gpu_profile.augmenter({**AUG_OFF, **ranges}, crop, seed=3)
    assert np.array_equal(np.asarray(layer(x, training=False)), x)  # inference: the face as it is
    return np.asarray(layer(x, training=True))


def test_the_augmentation_layer_draws_the_pipelines_ranges():
    """On a ramp image (pixel = its column) bilinear resampling is exact, so the gradient of each
    output in the middle of the face gives its transform: crop offsets within [0, 48 - crop],
    rotations within +-rotation of a turn, zooms within 1 +- zoom, and both ends of each range used."""
    ramp = np.broadcast_to(np.arange(48, dtype=np.float32)[None, None, :, None], (64, 48, 48, 1)).copy()
    assert gpu_profile.augmenter({**AUG_OFF, "enabled": False}, 48, seed=0) is None

    out = _augment(ramp, crop=40)
    assert out.shape == (64, 40, 40, 1)
    offset = out[:, :, :, 0] - np.arange(40)[None, None, :]
    assert np.allclose(offset, offset[:, :1, :1], atol=1e-3)  # a pure shift of the window
    assert offset.min() >= 0 and offset.max() <= 8 and offset.max() - offset.min() > 4

    mid = slice(18, 30)
    out = _augment(ramp, rotation=0.04)[:, mid, mid, 0]
    gx, gy = np.diff(out, axis=2).mean((1, 2)), np.diff(out, axis=1).mean((1, 2))
    angle = np.degrees(np.arctan2(-gy, gx))  # gx = cos, gy = -sin of the angle; length 1 (no zoom)
    assert np.allclose(np.hypot(gx, gy), 1, atol=1e-3)
    assert np.abs(angle).max() <= 14.4 + 1e-3 and angle.min() < -8 and angle.max() > 8

    out = _augment(ramp, zoom=0.1)[:, mid, mid, 0]
    gx = np.diff(out, axis=2).mean((1, 2))
    assert np.allclose(np.diff(out, axis=1), 0, atol=1e-3)
    assert gx.min() >= 1 / 1.1 - 1e-3 and gx.max() <= 1 / 0.9 + 1e-3 and gx.min() < 0.95 and gx.max() > 1.05

    faces = np.stack([synthetic_face(k) for k in range(32)])[..., None].astype(np.float32)
    out = _augment(faces, flip=True)
    mirrored = np.array([np.array_equal(o, f[:, ::-1]) for o, f in zip(out, faces)])
    same = np.array([np.array_equal(o, f) for o, f in zip(out, faces)])
    assert np.all(mirrored | same) and mirrored.any() and same.any()
