"""LiteRT export (Keras 3's own exporter) and the LiteRT runtime that serves the file."""

import warnings

import numpy as np
import pytest

from fer_pipeline.export import write_tflite
from fer_pipeline.models import build_model
from fer_pipeline.predictor import keras_predictor, load_predictor


# crop "any": a model of any input size (progressive resizing trains one), exported for 48x48 faces
@pytest.mark.parametrize("crop,quantize,atol", [(48, "float16", 2e-3), (48, "dynamic", 2e-2), (40, "none", 1e-5),
                                                ("any", "none", 1e-5)])
def test_tflite_export_runs_on_litert_and_matches_keras(tmp_path, crop, quantize, atol):
    model = build_model("bn_vgg", 48 if crop == "any" else crop, any_size=crop == "any", widths=(8, 16),
                        convs_per_stage=1, dense=0, dropout=0.0)
    path = tmp_path / "m.tflite"
    write_tflite(model, str(path), quantize)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]  # no temp file left behind
    x = np.random.default_rng(0).uniform(0, 255, (9, 48, 48, 1)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # tf.lite.Interpreter's deprecation warning
        tfl = load_predictor(str(path))
        out = tfl(x)
        again = tfl(x[:4])  # another batch size: the input is resized
    assert tfl.info["source"] == "tflite" and out.shape == (9, 7) and out.dtype == np.float32
    ref = keras_predictor(model, "keras")(x)
    np.testing.assert_allclose(out, ref, atol=atol)
    np.testing.assert_allclose(again, out[:4], atol=1e-6)


def test_an_unknown_quantization_is_refused(tmp_path):
    from fer_pipeline.errors import FerError

    model = build_model("bn_vgg", 48, widths=(4,), convs_per_stage=1, dense=0, dropout=0.0)
    with pytest.raises(FerError, match="unknown quantize 'int4'"):
        write_tflite(model, str(tmp_path / "m.tflite"), "int4")
    assert not list(tmp_path.iterdir())


def test_export_command_takes_its_defaults_from_params_yaml(tmp_path):
    import json
    import shutil

    from helpers import REPO, fer_cli, tiny_model_file

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    model = tiny_model_file(tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "test.npz", x=rng.integers(0, 255, (20, 48, 48, 1), dtype=np.uint8), y=rng.integers(0, 7, 20))
    r = fer_cli("export-tflite", "--model", str(model), "--data", str(tmp_path), "--out", str(tmp_path / "m.tflite"),
                "--report", str(tmp_path / "r.json"), "--max-drop-points", "100", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    import yaml

    assert report["quantize"] == yaml.safe_load((REPO / "params.yaml").read_text())["export"]["quantize"]
    assert report["tflite_bytes"] == (tmp_path / "m.tflite").stat().st_size > 0


def test_export_command_writes_beside_the_model_and_no_report_unless_asked(tmp_path):
    """A manual export of another model must not overwrite the pipeline's models/model.tflite or
    reports/export/tflite.json (both belong to the export stage)."""
    import shutil

    from helpers import REPO, fer_cli, tiny_model_file

    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "other").mkdir()
    model = tiny_model_file(tmp_path / "other" / "crop.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "test.npz", x=rng.integers(0, 255, (20, 48, 48, 1), dtype=np.uint8), y=rng.integers(0, 7, 20))
    r = fer_cli("export-tflite", "--model", str(model), "--data", str(tmp_path), "--max-drop-points", "100",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["crop.keras", "crop.tflite"]
    assert "other/crop.tflite" in r.stdout
    assert not (tmp_path / "reports").exists() and not (tmp_path / "models").exists()
