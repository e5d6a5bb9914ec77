"""Model loading: one ``Predictor`` (batched class probabilities for 48x48 faces) from a ``.keras``
file, a ``.tflite`` file (run by LiteRT, ``ai_edge_litert``) or an MLflow model URI
(``models:/fer-emotion@champion``, ``runs:/<id>/model``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from .errors import FerError
from .labels import LABELS


def pipeline_defaults() -> tuple[str, str]:
    """The pipeline's model file (the train stage's ``model=`` in dvc.yaml) and registered model
    name (params.yaml's ``evaluate.registered_model``), read from the repository when the command
    runs in one; outside one, the names the repository ships with."""
    model, name = "models/model.keras", "fer-emotion"
    if Path("dvc.yaml").exists():
        from .stage import declared_paths

        model = declared_paths("train").get("model", model)
    if Path("params.yaml").exists():
        from .params import load

        name = load(["evaluate"])["evaluate"]["registered_model"]
    return model, name
FACE_SHAPE = (48, 48, 1)  # what every model form takes: one grayscale face, raw 0-255


class Predictor:
    """Batched probabilities for (n, 48, 48, 1) raw 0-255 faces from any supported model form.
    ``info``: what answers (spec, source, and for a registry model its name, version and alias)."""

    def __init__(self, spec: str, source: str, fn, info: dict | None = None):
        self.spec, self._fn = spec, fn
        self.info = {"spec": spec, "source": source, **(info or {})}

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        if len(faces) == 0:
            return np.zeros((0, len(LABELS)), np.float32)
        return np.asarray(self._fn(faces.astype(np.float32).reshape(-1, *FACE_SHAPE)), np.float32)


def litert_fn(path: str):
    """A ``.tflite`` model run by LiteRT's interpreter (``tf.lite.Interpreter`` is deprecated and
    warns on every use); the input is resized to each batch's size."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path, num_threads=os.cpu_count())
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    state = {"n": None}

    def run(x: np.ndarray) -> np.ndarray:
        if state["n"] != len(x):
            interp.resize_tensor_input(inp["index"], list(x.shape))
            interp.allocate_tensors()
            state["n"] = len(x)
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out["index"]).copy()

    return run


def _keras_fn(model):
    import tensorflow as tf

    # One signature, so a new batch size never retraces (tracing holds the GIL: a server's other
    # requests would wait on it).
    @tf.function(input_signature=[tf.TensorSpec([None, *FACE_SHAPE], tf.float32)])
    def infer(x):
        return model(x, training=False)

    def run(x: np.ndarray) -> np.ndarray:
        return np.concatenate([infer(tf.constant(x[i:i + 512])).numpy() for i in range(0, len(x), 512)])

    return run


def keras_predictor(model, spec: str) -> Predictor:
    """A Predictor around an already loaded Keras model."""
    return Predictor(spec, "keras", _keras_fn(model))


CHOSEN = ("--model", "registry champion", "workspace", "shipped")   # info["chosen"]: which rule picked it


def load_predictor(spec: str | None = None) -> Predictor:
    """``spec``: a .keras / .tflite path or an MLflow URI. None: the registry champion, else the
    workspace's trained model (``pipeline_defaults``), else the model the package ships
    (``release``); a line on stderr and the Predictor's ``info["chosen"]`` say which answers."""
    pred = _load(spec)
    pred.info.setdefault("chosen", "--model")
    return pred


def _load(spec: str | None) -> Predictor:
    if spec is None:
        model_file, registered_model = pipeline_defaults()
        try:
            pred = _load(f"models:/{registered_model}@champion")
            print(f"model: {pred.spec} (registry champion)", file=sys.stderr)
            pred.info["chosen"] = "registry champion"
            return pred
        except FerError:
            pass
        if Path(model_file).exists():
            print(f"model: no registered champion; using the workspace's {model_file}", file=sys.stderr)
            pred = _load(model_file)
            pred.info["chosen"] = "workspace"
            return pred
        pred = load_shipped()
        print(f"model: no registered champion and no {model_file}; using the model the package ships "
              f"(trained on {pred.info['labels']}, released {pred.info['released']})", file=sys.stderr)
        pred.info["chosen"] = "shipped"
        return pred
    if spec.startswith(("models:/", "runs:/")):
        import mlflow

        from .tracking import tracking_uri

        mlflow.set_tracking_uri(tracking_uri())
        mlflow.set_registry_uri(tracking_uri())
        try:
            model = mlflow.keras.load_model(spec)
        except Exception as exc:  # MLflow raises several types for a missing model/alias
            raise FerError(f"cannot load MLflow model {spec} from {tracking_uri()}: "
                           f"{str(exc).splitlines()[0]}") from None
        info = {}
        if spec.startswith("models:/") and "@" in spec:
            name, alias = spec[len("models:/"):].split("@", 1)
            version = mlflow.MlflowClient().get_model_version_by_alias(name, alias).version
            info = {"name": name, "alias": alias, "version": str(version)}
        return Predictor(spec, "mlflow", _keras_fn(model), info)
    path = Path(spec)
    if not path.exists():
        raise FerError(f"model file {spec} not found; train one with `./run.sh` (or `dvc repro`)")
    if path.suffix == ".tflite":
        return Predictor(spec, "tflite", litert_fn(str(path)))
    import keras

    return keras_predictor(keras.models.load_model(path), spec)


def load_shipped(folder: Path | None = None) -> Predictor:
    """The model the package ships (``release``: its file checked against its manifest), its
    ``info`` naming the release; one line if it is missing or damaged."""
    from .release import MODEL_FILE, SHIPPED, read_manifest

    folder = Path(folder or SHIPPED)
    manifest = read_manifest(folder)
    path = folder / MODEL_FILE
    info = {"released": manifest["release"]["date"], "commit": manifest["release"]["commit"][:12],
            "labels": manifest["trained"]["labels"]}
    return Predictor(str(path), "shipped", litert_fn(str(path)), info)
