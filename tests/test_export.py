"""LiteRT export (Keras 3's own exporter) and the LiteRT runtime that serves the file."""

import warnings

import numpy as np
import pytest

from fer_pipeline.export import write_tflite
from fer_pipeline.models import build_model
from fer_pipeline.predictor import keras_predictor, load_predictor


@pytest.mark.parametrize("crop,quantize,atol", [(48, "float16", 2e-3), (48, "dynamic", 2e-2), (40, "none", 1e-5)])
def test_tflite_export_runs_on_litert_and_matches_keras(tmp_path, crop, quantize, atol):
    model = build_model("bn_vgg", crop, widths=(8, 16), convs_per_stage=1, dense=0, dropout=0.0)
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
