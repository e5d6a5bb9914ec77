"""TFLite export of a trained model, with an accuracy-parity check on the test split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import FerError
from .fsutil import atomic_path


def write_tflite(model, path: str, quantize: str) -> None:
    """Keras 3's own LiteRT export: ``float16`` weights, ``dynamic`` (int8 weights, float compute) or
    ``none``. Only LiteRT's built-in ops are allowed (no TensorFlow "flex" ops), so the file runs on
    the plain LiteRT runtime."""
    import tensorflow as tf

    opts: dict = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if quantize == "float16":
        opts = {"optimizations": [tf.lite.Optimize.DEFAULT],
                "target_spec": {**opts["target_spec"], "supported_types": [tf.float16]}}
    elif quantize == "dynamic":
        opts["optimizations"] = [tf.lite.Optimize.DEFAULT]
    elif quantize != "none":
        raise FerError(f"unknown quantize {quantize!r}; use float16, dynamic or none")
    with atomic_path(path) as tmp:  # the temp name ends in .tflite, as the exporter requires
        model.export(str(tmp), format="litert", verbose=False, **opts)


def export_checked(model_path: str, out_path: str, data_dir: str, quantize: str, max_drop: float) -> dict:
    """Write the LiteRT file and compare its test accuracy with the Keras model's (``max_drop``: a
    fraction): the parity report."""
    import keras

    from .fsutil import load_split
    from .predictor import keras_predictor, load_predictor

    if not Path(model_path).exists():
        raise FerError(f"{model_path} not found: run the train stage first (`dvc repro train`)")
    model = keras.models.load_model(model_path)
    write_tflite(model, out_path, quantize)
    x, y = load_split(data_dir, "test")
    keras_acc = float(np.mean(keras_predictor(model, model_path)(x).argmax(1) == y))
    tfl = load_predictor(out_path)
    tfl_acc = float(np.mean(tfl(x).argmax(1) == y))
    report = {
        "quantize": quantize,
        "tflite_bytes": os.path.getsize(out_path),
        "keras_bytes": os.path.getsize(model_path),
        "test_accuracy_keras": round(keras_acc, 4),
        "test_accuracy_tflite": round(tfl_acc, 4),
        "accuracy_drop_points": round(100 * (keras_acc - tfl_acc), 2),
        "parity_ok": bool(keras_acc - tfl_acc <= max_drop),
    }
    return report


def report_parity(out_path: str, r: dict, max_drop_points: float) -> None:
    """Print the parity line; a drop beyond ``max_drop_points`` is an error (one line)."""
    print(f"{out_path}: {r['tflite_bytes'] / 1e6:.2f} MB ({r['quantize']}); test accuracy keras "
          f"{r['test_accuracy_keras']:.4f}, tflite {r['test_accuracy_tflite']:.4f} "
          f"(drop {r['accuracy_drop_points']} pt, {'ok' if r['parity_ok'] else 'TOO LARGE'})")
    if not r["parity_ok"]:
        raise FerError(f"TFLite accuracy drop {r['accuracy_drop_points']} pt exceeds {max_drop_points} pt")


def run_export(params: dict, *, model: str, data: str, tflite: str, reports: str) -> dict:
    """The export stage (paths: dvc.yaml's ``cmd``): the LiteRT file, its parity report
    (``reports``/tflite.json), and an error when its test accuracy drops more than
    ``export.max_drop_points`` below Keras's."""
    from .fsutil import write_json
    from .layout import Export

    p = params["export"]
    r = export_checked(model, tflite, data, p["quantize"], max_drop=p["max_drop_points"] / 100)
    write_json(Path(reports) / Export.REPORT, r)
    report_parity(tflite, r, p["max_drop_points"])
    return r


def add_parser(sub) -> None:
    p = sub.add_parser("export-tflite", help="convert a .keras model to TFLite and check test accuracy parity")
    p.add_argument("--model", help="a .keras file (default: the pipeline's, from dvc.yaml)")
    p.add_argument("--out", help="default: beside --model, with the suffix .tflite")
    p.add_argument("--data", default="data/processed", help="folder with test.npz (preprocess output)")
    p.add_argument("--quantize", choices=["dynamic", "float16", "none"],
                   help="default: params.yaml's export.quantize")
    p.add_argument("--max-drop-points", type=float, help="default: params.yaml's export.max_drop_points")
    p.add_argument("--report", help="also write the figures as JSON here (none by default: the pipeline's "
                   "reports/export/ belongs to the export stage)")

    def func(args):
        from .fsutil import write_json
        from .params import load

        if args.model is None:
            from .predictor import pipeline_defaults

            args.model = pipeline_defaults()[0]
        if args.quantize is None or args.max_drop_points is None:  # params.yaml holds the defaults
            cfg = load(["export"])["export"]
            args.quantize = args.quantize or cfg["quantize"]
            args.max_drop_points = cfg["max_drop_points"] if args.max_drop_points is None else args.max_drop_points
        args.out = args.out or str(Path(args.model).with_suffix(".tflite"))
        r = export_checked(args.model, args.out, args.data, args.quantize, args.max_drop_points / 100)
        if args.report:
            write_json(args.report, r)
        report_parity(args.out, r, args.max_drop_points)

    p.set_defaults(func=func)
