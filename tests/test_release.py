"""The model the package ships and ``fer release``: the manifest matches the file and the card, a
release the promotion rule refuses writes nothing, a damaged shipped file is one line, and a
workspace that never trained answers with the shipped model."""

import json
import shutil

import numpy as np
import pytest

from fer_pipeline.errors import FerError
from fer_pipeline.labels import LABELS
from fer_pipeline.predictor import load_shipped
from fer_pipeline.release import CARD, MANIFEST, MODEL_FILE, SHIPPED, read_manifest, run_release
from fer_pipeline.render import pct

from conftest import REPO
from helpers import astronaut_gray, fer_cli, tiny_model_file, write_png


def test_the_shipped_model_matches_its_manifest_and_its_card_gives_the_manifest_s_figures():
    m = read_manifest()          # raises if the file's sha256 is not the manifest's
    assert m["model"]["bytes"] == (SHIPPED / MODEL_FILE).stat().st_size and m["model"]["labels"] == list(LABELS)
    card = (SHIPPED / CARD).read_text()
    t, f = m["metrics"]["fer2013_test"], m["metrics"]["ferplus_test"]
    for v in (t["accuracy"], *t["ci95"], f["accuracy"], *f["ci95"], *t["recall"].values()):
        assert pct(v) in card
    assert m["model"]["sha256"] in card and m["release"]["commit"][:12] in card
    # what ships is what params.yaml trains by default
    from helpers import repo_params

    assert m["trained"]["labels"] == repo_params()["train"]["labels"]
    probs = load_shipped()(astronaut_gray()[100:148, 200:248][None, ..., None])
    assert probs.shape == (1, 7) and abs(probs.sum() - 1) < 1e-3


@pytest.mark.parametrize("damage", ["model", "manifest", "missing"])
def test_a_damaged_or_missing_shipped_model_is_one_line(tmp_path, damage):
    folder = tmp_path / "model"
    shutil.copytree(SHIPPED, folder)
    if damage == "model":
        data = bytearray((folder / MODEL_FILE).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (folder / MODEL_FILE).write_bytes(bytes(data))
    elif damage == "manifest":
        (folder / MANIFEST).write_text("{ not json")
    else:
        (folder / MODEL_FILE).unlink()
    word = {"model": "is damaged: its sha256", "manifest": r"is damaged \(not its JSON\)",
            "missing": "no shipped model"}
    with pytest.raises(FerError, match=word[damage]) as err:
        load_shipped(folder)
    assert "\n" not in str(err.value) and "reinstall" in str(err.value)


# --- fer release on a workspace made here ---------------------------------------------------


def _val_csv(truth: np.ndarray, pred: np.ndarray) -> str:
    rows = ["actual,predicted,ferplus"] + [f"{LABELS[a]},{LABELS[b]},{LABELS[a]}" for a, b in zip(truth, pred)]
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def tflite_file(tmp_path_factory):
    import keras

    from fer_pipeline.export import write_tflite

    d = tmp_path_factory.mktemp("tflite")
    write_tflite(keras.models.load_model(tiny_model_file(d / "tiny.keras")), str(d / "tiny.tflite"), "dynamic")
    return d / "tiny.tflite"


def workspace(root, tflite_file, right: float, labels: str = "fer2013"):
    """A workspace whose evaluate and export outputs say its model is right on ``right`` of val."""
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["labels"] = labels
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 7, 600)
    pred = np.where(np.arange(600) < right * 600, truth, (truth + 1) % 7)
    for stage in ("evaluate", "export"):
        (root / "reports" / stage).mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    (root / "reports/evaluate/val_predictions.csv").write_text(_val_csv(truth, pred))
    board = {"accuracy": right, "accuracy_ci95": [right - 0.02, right + 0.02], "tta_accuracy": right + 0.005,
             "macro_f1": right - 0.1, "per_class": {k: {"recall": 0.5 + i / 100} for i, k in enumerate(LABELS)}}
    details = {"test": board, "val": board, "val_ferplus": {"accuracy": right + 0.1},
               "test_ferplus": {"accuracy": right + 0.11, "accuracy_ci95": [right + 0.09, right + 0.13],
                                "tta_accuracy": right + 0.12, "images": 3349},
               "calibration": {"temperature": 1.1, "helps": False, "test": {"ece": 0.03, "ece_scaled": 0.031},
                               "labels": "FER2013 labels"}}
    (root / "reports/evaluate/evaluation.json").write_text(json.dumps(details))
    (root / "reports/evaluate/metrics.json").write_text(json.dumps({"test_acc": right}))
    (root / "reports/export/tflite.json").write_text(json.dumps({"quantize": "dynamic", "test_accuracy_keras": right,
                                                          "test_accuracy_tflite": right - 0.001}))
    shutil.copy(tflite_file, root / "models/model.tflite")
    return root


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_release_ships_a_first_model_refuses_a_worse_one_and_writes_nothing(tmp_path, tflite_file):
    shipped = tmp_path / "pkg" / "model"
    m = run_release(workspace(tmp_path / "first", tflite_file, 0.60), folder=shipped)
    assert m["decision"]["promote"] and "ships no model yet" in m["decision"]["reason"]
    assert read_manifest(shipped)["metrics"]["fer2013_test"]["accuracy"] == 0.60
    before = snapshot(shipped)
    with pytest.raises(FerError, match="release refused, nothing written: val gain -5.00 pt"):
        run_release(workspace(tmp_path / "worse", tflite_file, 0.55), folder=shipped)
    assert snapshot(shipped) == before and sorted(p.name for p in shipped.parent.iterdir()) == ["model"]
    # level on val (a gain under the minimum) is refused too; a clear gain ships
    with pytest.raises(FerError, match="release refused"):
        run_release(workspace(tmp_path / "level", tflite_file, 0.601), folder=shipped)
    m = run_release(workspace(tmp_path / "better", tflite_file, 0.66), folder=shipped)
    assert m["decision"]["promote"] and read_manifest(shipped)["metrics"]["fer2013_test"]["accuracy"] == 0.66
    assert "66.0%" in (shipped / CARD).read_text()


def test_an_override_ships_a_refused_model_and_the_manifest_says_why(tmp_path, tflite_file):
    shipped = tmp_path / "model"
    run_release(workspace(tmp_path / "a", tflite_file, 0.66), folder=shipped)
    m = run_release(workspace(tmp_path / "b", tflite_file, 0.60), folder=shipped, override="agrees with people")
    assert not m["decision"]["promote"] and read_manifest(shipped)["decision"]["override"] == "agrees with people"
    assert "Shipped by override: agrees with people" in (shipped / CARD).read_text()


def test_release_without_evaluate_outputs_is_one_line(tmp_path, tflite_file):
    root = workspace(tmp_path / "ws", tflite_file, 0.6)
    (root / "reports/evaluate/val_predictions.csv").unlink()
    with pytest.raises(FerError, match=r"nothing to release: reports/evaluate/val_predictions.csv missing; run `dvc"):
        run_release(root, folder=tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_a_workspace_that_never_trained_answers_with_the_shipped_model(tmp_path):
    import os

    photo = write_png(tmp_path / "astronaut.png", astronaut_gray())
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"}
    r = fer_cli("predict", str(photo), cwd=tmp_path, env=env)   # no params.yaml, no model, no champion
    assert r.returncode == 0, r.stderr
    (row,) = [json.loads(line) for line in r.stdout.splitlines()]
    assert row["model"]["chosen"] == "shipped" and row["model"]["labels"] == read_manifest()["trained"]["labels"]
    assert len(row["faces"]) == 1 and "the model the package ships" in r.stderr
