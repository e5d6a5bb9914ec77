"""Training: tf.data input pipeline, optimizer and schedule, best-on-val checkpoint, MLflow logging."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .augment import AugmentConfig, augment_batch, mixup
from .fsutil import atomic_path, flatten, write_json
from .labels import NUM_CLASSES


@dataclass
class TrainResult:
    model: object
    history: dict[str, list[float]]
    best_epoch: int
    best_val_accuracy: float
    seconds: float
    images_per_second: float
    params: int


def seed_everything(seed: int, deterministic: bool) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def get_strategy(name: str):
    """``none`` (default device), ``mirrored`` (all local devices) or ``multi_worker`` (TF_CONFIG)."""
    import tensorflow as tf

    if name in (None, "none"):
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown distribute strategy {name!r}; use none, mirrored or multi_worker")


def make_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, training: bool,
                 aug: AugmentConfig | None = None, sample_weights: np.ndarray | None = None,
                 seed: int = 0):
    """(images float32 0-255, one-hot labels[, weights]) batches. Training: shuffled, repeated,
    augmented per batch with stateless seeds (seed, batch index), parallel and prefetched."""
    import tensorflow as tf

    AUTOTUNE = tf.data.AUTOTUNE
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[y]
    weights = sample_weights if sample_weights is not None else np.ones(len(y), np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, onehot, weights.astype(np.float32)))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size, drop_remainder=False)
    aug = aug or AugmentConfig(flip=False)

    def prepare(step, batch):
        images, labels, w = batch
        images = tf.cast(images, tf.float32)
        if training:
            batch_seed = tf.stack([tf.constant(seed, tf.int64), step])
            images = augment_batch(images, aug, batch_seed)
            if aug.mixup_alpha:
                images, labels, w = mixup(images, labels, w, aug.mixup_alpha, batch_seed + 1)
        return images, labels, w

    parallel = {"num_parallel_calls": AUTOTUNE, "deterministic": True} if training else {}
    ds = ds.enumerate().map(prepare, **parallel)
    return ds.prefetch(AUTOTUNE)


def make_optimizer(cfg: dict, steps_per_epoch: int, epochs: int):
    import keras

    total = max(steps_per_epoch * epochs, 1)
    warmup = int(steps_per_epoch * cfg.get("warmup_epochs", 0))
    lr = float(cfg["learning_rate"])
    schedule_name = cfg.get("schedule", "cosine")
    if schedule_name == "cosine":
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=lr / 10 if warmup else lr, decay_steps=max(total - warmup, 1),
            alpha=float(cfg.get("min_lr_ratio", 0.01)), warmup_target=lr if warmup else None,
            warmup_steps=warmup)
    elif schedule_name == "constant":
        schedule = lr
    else:
        raise ValueError(f"unknown schedule {schedule_name!r}; use cosine or constant")
    name = cfg.get("optimizer", "adamw")
    wd = float(cfg.get("weight_decay", 0.0))
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=wd)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=schedule)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=schedule, momentum=0.9, nesterov=True,
                                    weight_decay=wd or None)
    raise ValueError(f"unknown optimizer {name!r}; use adamw, adam or sgd")


def _callbacks(patience: int, mlflow_logging: bool, epochs: int):
    import keras

    class BestWeights(keras.callbacks.Callback):
        """Keep the weights of the best val-accuracy epoch in memory; restore them at the end."""

        def __init__(self):
            super().__init__()
            self.best, self.best_epoch, self.weights = -math.inf, -1, None

        def on_epoch_end(self, epoch, logs=None):
            acc = (logs or {}).get("val_accuracy", -math.inf)
            if acc > self.best:
                self.best, self.best_epoch, self.weights = acc, epoch, self.model.get_weights()

        def on_train_end(self, logs=None):
            if self.weights is not None:
                self.model.set_weights(self.weights)

    class EpochLog(keras.callbacks.Callback):
        """One line per epoch; learning rate into the logs; metrics to MLflow when a run is active."""

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            lr = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)
            logs["epoch_seconds"] = time.time() - self.t0
            print(f"epoch {epoch + 1:3d}/{epochs}  loss {logs['loss']:.4f}  acc {logs['accuracy']:.4f}  "
                  f"val_loss {logs.get('val_loss', float('nan')):.4f}  "
                  f"val_acc {logs.get('val_accuracy', float('nan')):.4f}  "
                  f"lr {logs['learning_rate']:.2e}  {logs['epoch_seconds']:.0f}s", flush=True)
            if mlflow_logging:
                import mlflow

                mlflow.log_metrics({k: float(v) for k, v in logs.items()}, step=epoch + 1)

    best = BestWeights()
    cbs = [EpochLog(), best]
    if patience:
        cbs.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=patience))
    return cbs, best


def train(train_xy: tuple[np.ndarray, np.ndarray], val_xy: tuple[np.ndarray, np.ndarray], cfg: dict,
          aug_params: dict, class_weight: list[float] | None = None,
          mlflow_logging: bool = False) -> TrainResult:
    """Build the model chosen by ``cfg['model']`` and fit it; the best-on-val weights are returned."""
    from .models import build_model

    seed_everything(int(cfg["seed"]), bool(cfg.get("deterministic", False)))
    x, y = train_xy
    batch, epochs = int(cfg["batch_size"]), int(cfg["epochs"])
    steps = math.ceil(len(x) / batch)
    weights = np.asarray(class_weight, np.float32)[y] if class_weight else None
    train_ds = make_dataset(x, y, batch, True, AugmentConfig.from_params(aug_params), weights, int(cfg["seed"]))
    val_ds = make_dataset(*val_xy, batch_size=256, training=False)

    import keras

    strategy = get_strategy(cfg.get("distribute", "none"))
    with strategy.scope():
        model_cfg = dict(cfg["model"])
        name = model_cfg.pop("name")
        model = build_model(name, **model_cfg.get(name, {}))
        model.compile(
            optimizer=make_optimizer(cfg, steps, epochs),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=float(cfg.get("label_smoothing", 0.0))),
            metrics=["accuracy"], jit_compile=False)
    callbacks, best = _callbacks(int(cfg.get("patience", 0)), mlflow_logging, epochs)
    print(f"training {name} ({model.count_params():,} params) on {len(x):,} images, "
          f"{epochs} epochs x {steps} steps of {batch}", flush=True)
    t0 = time.time()
    hist = model.fit(train_ds, validation_data=val_ds, epochs=epochs, steps_per_epoch=steps,
                     callbacks=callbacks, shuffle=False, verbose=0)
    seconds = time.time() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    ran = len(history["loss"])
    return TrainResult(model, history, best.best_epoch + 1, float(best.best), seconds,
                       ran * steps * batch / max(seconds, 1e-9), int(model.count_params()))


def resolve_profile(cfg: dict) -> dict:
    """Apply ``gpu_overrides`` when ``profile: gpu`` (nested keys merged)."""
    def merge(base: dict, over: dict) -> dict:
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    cfg = dict(cfg)
    profile = cfg.get("profile", "cpu")
    overrides = cfg.pop("gpu_overrides", {}) or {}
    if profile == "gpu":
        cfg = merge(cfg, overrides)
    elif profile != "cpu":
        raise ValueError(f"unknown train.profile {profile!r}; use cpu or gpu")
    return cfg


def history_rows(history: dict[str, list[float]]) -> list[dict]:
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate") if k in history]
    return [{"epoch": i + 1, **{k: round(history[k][i], 6) for k in keys}} for i in range(len(history["loss"]))]


def log_model(model, name: str = "model") -> str:
    """Log a Keras model with an explicit signature (no input example: see README, Known issues)."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 48, 48, 1), "pixels")]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, NUM_CLASSES), "probs")]))
    info = mlflow.keras.log_model(model, name=name, signature=signature)
    return info.model_uri


def run_train(data_dir: str, params: dict, out: dict[str, str], root: str = ".") -> dict:
    """The train stage: fit, save the model and reports, log everything to a new MLflow run."""
    import mlflow

    from . import plots, tracking
    from .preprocess import load_split

    cfg = resolve_profile(params["train"])
    train_xy, val_xy = load_split(data_dir, "train"), load_split(data_dir, "val")
    prep = {}
    if Path(out["preprocess_report"]).exists():
        import json

        prep = json.loads(Path(out["preprocess_report"]).read_text())
    weights = list(prep.get("class_weights", {}).values()) or None
    aug_params = params["preprocess"]["augment"]

    uri = tracking.setup(params["tracking"]["experiment"], root)
    with mlflow.start_run(run_name=tracking.run_name(root)) as run:
        mlflow.set_tags({**tracking.git_info(root), "data_md5": tracking.data_md5(root),
                         "dvc_exp": os.environ.get("DVC_EXP_NAME", ""), "stage": "train"})
        mlflow.log_params(flatten({k: v for k, v in params.items() if k != "tracking"}))
        for split, (xs, ys) in (("train", train_xy), ("val", val_xy)):
            ds = mlflow.data.from_numpy(xs, targets=ys, name=f"fer2013-{split}")
            mlflow.log_input(ds, context="training" if split == "train" else "validation")
        if Path(out["preview"]).exists():
            mlflow.log_artifact(out["preview"], "figures")

        result = train(train_xy, val_xy, cfg, aug_params, weights, mlflow_logging=True)

        with atomic_path(out["model"]) as tmp:  # temp name ends in .keras, as Keras requires
            result.model.save(tmp)
        plots.curves(result.history, out["curves"])
        rows = history_rows(result.history)
        write_json(out["history"], rows)
        metrics = {
            "best_val_accuracy": round(result.best_val_accuracy, 4),
            "best_epoch": result.best_epoch,
            "epochs_run": len(rows),
            "train_seconds": round(result.seconds, 1),
            "train_images_per_second": round(result.images_per_second, 1),
            "params": result.params,
            "train_images": int(len(train_xy[0])),
        }
        write_json(out["metrics"], metrics)
        mlflow.log_metrics({"best_val_accuracy": result.best_val_accuracy,
                            "train_seconds": result.seconds,
                            "train_images_per_second": result.images_per_second})
        mlflow.set_tags({"param_count": str(result.params), "train_seconds": f"{result.seconds:.1f}"})
        mlflow.log_artifact(out["curves"], "figures")
        mlflow.log_artifact(out["history"], "history")
        log_model(result.model)
        tracking.write_run_info(out["run_info"], run.info.run_id, run.info.experiment_id, uri)
    print(f"best val accuracy {metrics['best_val_accuracy']:.4f} at epoch {metrics['best_epoch']}; "
          f"{metrics['train_seconds']:.0f}s; MLflow run {run.info.run_id}")
    return metrics
