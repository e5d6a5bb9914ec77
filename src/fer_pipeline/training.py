"""Training: tf.data input pipeline, optimizer and schedule, best-on-val checkpoint, MLflow logging.

``cfg`` is the validated ``train`` section of params.yaml (``fer_pipeline.params``): every value
comes from there, none is defaulted here. TensorFlow (and ``augment``, which needs it) is imported
inside the functions that use it, so the optimizer, callbacks and history helpers also serve Keras
on another backend (``scripts/gpu_profile.py`` trains on JAX where TensorFlow is not installed)."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

from .fsutil import atomic_path, write_json
from .labels import NUM_CLASSES

if TYPE_CHECKING:
    from .augment import AugmentConfig


@dataclass
class TrainResult:
    model: object
    history: dict[str, list[float]]
    best_epoch: int
    best_val_accuracy: float
    seconds: float              # fit() wall time, validation included
    step_seconds: float         # time in training steps only (validation excluded)
    images_seen: int
    params: int
    flops_per_image: int        # training FLOPs per image at the model's input (crop) size
    compute_flops: float        # training FLOPs of the whole run (progressive epochs at their size)

    @property
    def images_per_second(self) -> float:
        """Training step rate: images per second of training steps, validation excluded."""
        return self.images_seen / max(self.step_seconds, 1e-9)

    @property
    def epoch_seconds(self) -> float:
        return self.seconds / max(len(self.history.get("loss", [])), 1)


def seed_everything(seed: int, deterministic: bool) -> None:
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def get_strategy(name: str):
    """``none`` (default device) or ``mirrored`` (all local devices). Multi-worker training is not
    offered: Keras 3 fails under MultiWorkerMirroredStrategy (keras-team/keras#20585; README)."""
    import tensorflow as tf

    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise ValueError(f"unknown distribute strategy {name!r}; use none or mirrored")


def make_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, training: bool,
                 aug: AugmentConfig | None = None, sample_weights: np.ndarray | None = None,
                 seed: int = 0, shrink: tuple[int, int] | None = None):
    """(images float32 0-255, target rows, weights) batches; ``y`` is label ids (one-hot here) or
    (n, 7) target rows already (FER+ soft or majority targets, ``targets.make_targets``). Training: shuffled, repeated,
    augmented per batch with stateless seeds (seed, batch index), parallel and prefetched.
    ``shrink`` = (batches, side): the first ``batches`` training batches are scaled down to ``side``
    x ``side`` after augmentation (progressive resizing; area-averaging, as ``antialias`` does)."""
    import tensorflow as tf

    from .augment import AugmentConfig, augment_batch, mixup

    AUTOTUNE = tf.data.AUTOTUNE
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[y] if y.ndim == 1 else y.astype(np.float32)
    weights = sample_weights if sample_weights is not None else np.ones(len(y), np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, onehot, weights.astype(np.float32)))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size, drop_remainder=False)
    aug = aug or AugmentConfig.none()

    def prepare(step, batch):
        images, labels, w = batch
        images = tf.cast(images, tf.float32)
        if training:
            batch_seed = tf.stack([tf.constant(seed, tf.int64), step])
            images = augment_batch(images, aug, batch_seed)
            if aug.mixup_alpha:
                images, labels, w = mixup(images, labels, w, aug.mixup_alpha, batch_seed + 1)
            if shrink:
                batches, side = shrink
                images = tf.cond(step < batches,
                                 lambda: tf.image.resize(images, [side, side], antialias=True),
                                 lambda: images)
        return images, labels, w

    parallel = {"num_parallel_calls": AUTOTUNE, "deterministic": True} if training else {}
    ds = ds.enumerate().map(prepare, **parallel)
    return ds.prefetch(AUTOTUNE)


def make_optimizer(cfg: dict, steps_per_epoch: int, epochs: int):
    """Optimizer and schedule from the ``train`` section; ``ema`` > 0 keeps an exponential moving
    average of the weights (Keras's ``use_ema``), which validation and the saved model use."""
    total = max(steps_per_epoch * epochs, 1)
    warmup = int(steps_per_epoch * cfg["warmup_epochs"])
    lr = float(cfg["learning_rate"])
    schedule_name = cfg["schedule"]
    if schedule_name == "cosine":
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=lr / 10 if warmup else lr, decay_steps=max(total - warmup, 1),
            alpha=float(cfg["min_lr_ratio"]), warmup_target=lr if warmup else None,
            warmup_steps=warmup)
    elif schedule_name == "constant":
        schedule = lr
    else:
        raise ValueError(f"unknown schedule {schedule_name!r}; use cosine or constant")
    name = cfg["optimizer"]
    wd = float(cfg["weight_decay"])
    ema = {"use_ema": True, "ema_momentum": float(cfg["ema"])} if cfg["ema"] else {}
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=wd, **ema)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=schedule, **ema)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=schedule, momentum=0.9, nesterov=True,
                                    weight_decay=wd or None, **ema)
    raise ValueError(f"unknown optimizer {name!r}; use adamw, adam or sgd")


class EpochLog(keras.callbacks.Callback):
    """One line per epoch; the learning rate and the epoch's wall time into the epoch's logs (so
    History, MLflow and the reports get them); the time spent in training steps apart from
    validation (``step_seconds``), which no Keras callback measures."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs, self.step_seconds, self.t0, self.t_val = epochs, 0.0, 0.0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.t0, self.t_val = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if self.t_val is None:  # the epoch's validation starts: its training steps are done
            self.t_val = time.perf_counter()
            self.step_seconds += self.t_val - self.t0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        now = time.perf_counter()
        if self.t_val is None:
            self.step_seconds += now - self.t0
        lr = self.model.optimizer.learning_rate
        logs["learning_rate"] = float(lr.numpy() if hasattr(lr, "numpy") else lr)
        logs["epoch_seconds"] = now - self.t0
        print(f"epoch {epoch + 1:3d}/{self.epochs}  loss {logs['loss']:.4f}  acc {logs['accuracy']:.4f}  "
              f"val_loss {logs.get('val_loss', float('nan')):.4f}  "
              f"val_acc {logs.get('val_accuracy', float('nan')):.4f}  "
              f"lr {logs['learning_rate']:.2e}  {logs['epoch_seconds']:.0f}s", flush=True)


def callbacks(patience: int, epochs: int, ema: bool, mlflow_logging: bool):
    """``(callbacks, best, log)``. ``best`` is Keras's ``EarlyStopping`` on val accuracy with
    ``restore_best_weights``, which restores the best epoch's weights at the end whether or not it
    stopped early (``patience`` 0 = never stop). Per-epoch metrics go to MLflow through
    ``mlflow.keras.MlflowCallback`` (step = epoch index, from 0)."""
    log = EpochLog(epochs)
    best = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", restore_best_weights=True,
                                         patience=patience or epochs)
    # With EMA, validation and the best-epoch snapshot see the averaged weights: SwapEMAWeights puts
    # them in the model at each epoch's end, before EarlyStopping reads them (order matters).
    cbs = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema else []
    cbs += [log, best]  # log first: the others see learning_rate and epoch_seconds in the logs
    if mlflow_logging:
        import mlflow

        cbs.append(mlflow.keras.MlflowCallback())
    return cbs, best, log


def train(train_xy: tuple[np.ndarray, np.ndarray], val_xy: tuple[np.ndarray, np.ndarray], cfg: dict,
          aug_params: dict, class_weight: list[float] | None = None,
          mlflow_logging: bool = False, strategy=None) -> TrainResult:
    """Build the model chosen by ``cfg['model']`` and fit it; the best-on-val weights are returned.
    ``strategy``: made by the caller when it runs TF ops first (a multi-worker strategy must exist
    before any op runs); else made here, first thing."""
    from .augment import AugmentConfig
    from .models import build_model, training_flops_at, training_flops_per_image

    strategy = strategy or get_strategy(cfg["distribute"])
    seed_everything(int(cfg["seed"]), bool(cfg["deterministic"]))
    x, y = train_xy
    batch, epochs = int(cfg["batch_size"]), int(cfg["epochs"])
    steps = math.ceil(len(x) / batch)
    weights = np.asarray(class_weight, np.float32)[y if y.ndim == 1 else y.argmax(1)] if class_weight else None
    aug = AugmentConfig.from_params(aug_params, int(cfg["crop_size"]))
    # Progressive resizing: the first `small_epochs` epochs on faces scaled to `small` x `small`.
    small_epochs, small = int(cfg["progressive"]["epochs"]), int(cfg["progressive"]["size"])
    shrink = (small_epochs * steps, small) if small_epochs else None
    train_ds = make_dataset(x, y, batch, True, aug, weights, int(cfg["seed"]), shrink)
    val_ds = make_dataset(*val_xy, batch_size=256, training=False)

    name = cfg["model"]["name"]
    with strategy.scope():
        model = build_model(name, int(cfg["crop_size"]), any_size=bool(small_epochs), **cfg["model"][name])
        model.compile(
            optimizer=make_optimizer(cfg, steps, epochs),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=float(cfg["label_smoothing"])),
            metrics=["accuracy"], jit_compile=False)
    cbs, best, log = callbacks(int(cfg["patience"]), epochs, bool(cfg["ema"]), mlflow_logging)
    print(f"training {name} ({model.count_params():,} params) on {len(x):,} images, "
          f"{epochs} epochs x {steps} steps of {batch}"
          + (f"; the first {small_epochs} on faces scaled to {small}x{small}" if small_epochs else ""), flush=True)
    t0 = time.time()
    hist = model.fit(train_ds, validation_data=val_ds, epochs=epochs, steps_per_epoch=steps,
                     callbacks=cbs, shuffle=False, verbose=0)
    seconds = time.time() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    ran = len(history["loss"])
    images, small_images, small_flops = ran * steps * batch, min(ran, small_epochs) * steps * batch, 0
    if small_epochs:  # built after training, so the run's random draws are those of a plain run
        flops = training_flops_at(name, int(cfg["crop_size"]), **cfg["model"][name])
        small_flops = training_flops_at(name, small, **cfg["model"][name])
    else:
        flops = training_flops_per_image(model)
    compute = flops * (images - small_images) + small_flops * small_images
    return TrainResult(model, history, best.best_epoch + 1, float(best.best), seconds, log.step_seconds,
                       images, int(model.count_params()), flops, float(compute))


def history_rows(history: dict[str, list[float]]) -> list[dict]:
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate") if k in history]
    return [{"epoch": i + 1, **{k: round(history[k][i], 6) for k in keys}} for i in range(len(history["loss"]))]


def augmentation_preview(x: np.ndarray, aug: AugmentConfig, n: int = 8, seed: int = 0):
    """A figure: each row one training face, then five versions as the training pipeline makes them."""
    import tensorflow as tf

    from .augment import augment_batch
    from .plots import image_rows

    rng = np.random.default_rng(seed)
    faces = x[rng.choice(len(x), size=min(n, len(x)), replace=False)].astype(np.float32)
    versions = [augment_batch(tf.constant(faces), aug, tf.constant([seed, v], tf.int64)).numpy()
                for v in range(1, 6)]
    return image_rows([faces, *versions], ["original"] + [f"aug {v}" for v in range(1, 6)],
                      "Training augmentation preview")


def training_targets(data: str, labels: str):
    """``(train (x, y), val (x, y), dropped)`` under the target ``labels`` (``targets`` module): y is
    label ids for ``fer2013`` (the stream of the plain pipeline), else (n, 7) target rows; images a
    FER+ target cannot use are left out and counted per split and reason."""
    from .fsutil import load_split, load_votes
    from .targets import check_target, make_targets

    check_target(labels)
    out, dropped = [], {}
    for split in ("train", "val"):
        x, y = load_split(data, split)
        if labels == "fer2013":
            out.append((x, y))
            continue
        t = make_targets(labels, y, load_votes(data, split), training=split == "train")
        out.append((x[t.keep], t.y))
        dropped[split] = t.dropped
    return out[0], out[1], dropped


def run_train(params: dict, *, data: str, preprocess_report: str, model: str, run_info: str, metrics: str,
              history: str, curves: str, preview: str, root: str = ".") -> dict:
    """The train stage: fit on ``data``/{train,val}.npz, save the model and reports, log everything
    to a new MLflow run. The paths come from dvc.yaml's ``cmd``."""
    import mlflow

    from . import plots, tracking
    from .augment import AugmentConfig
    from .errors import FerError

    cfg = params["train"]
    strategy = get_strategy(cfg["distribute"])
    train_xy, val_xy, dropped = training_targets(data, cfg["labels"])
    prep = json.loads(Path(preprocess_report).read_text())  # class weights
    weights = list(prep["class_weights"].values())
    if cfg["labels"] != "fer2013" and any(w != 1.0 for w in weights):
        raise FerError(f"preprocess.class_weights are counted on FER2013's labels: with train.labels "
                       f"{cfg['labels']} set preprocess.class_weights none")
    aug_params = params["preprocess"]["augment"]
    aug = AugmentConfig.from_params(aug_params, int(cfg["crop_size"]))

    tracking.setup(params["tracking"]["experiment"], root)
    with mlflow.start_run(run_name=tracking.run_name(root)) as run:
        plots.publish(augmentation_preview(train_xy[0], aug), preview)
        mlflow.set_tags({**tracking.git_info(root), "stage": "train", **tracking.ci_tags(),
                         **tracking.machine_tags(),  # the CPU the run's minutes come from
                         "data_md5": tracking.data_md5([Path(data) / f"{s}.npz" for s in ("train", "val")]),
                         "dvc_exp": os.environ.get("DVC_EXP_NAME", "")})
        mlflow.log_params(tracking.flatten({k: v for k, v in params.items() if k != "tracking"}))
        mlflow.set_tag("labels", cfg["labels"])
        for split, (xs, ys) in (("train", train_xy), ("val", val_xy)):
            ds = mlflow.data.from_numpy(xs, targets=ys, name=f"fer2013-{split}")
            mlflow.log_input(ds, context="training" if split == "train" else "validation")

        result = train(train_xy, val_xy, cfg, aug_params, weights, mlflow_logging=True, strategy=strategy)

        with atomic_path(model) as tmp:  # temp name ends in .keras, as Keras requires
            result.model.save(tmp)
        plots.publish(plots.curves(result.history), curves)
        rows = history_rows(result.history)
        write_json(history, rows)
        compute_tflop = result.compute_flops / 1e12
        summary = {
            "best_val_accuracy": round(result.best_val_accuracy, 4),
            "best_epoch": result.best_epoch,
            "epochs_run": len(rows),
            "train_seconds": round(result.seconds, 1),
            "epoch_seconds": round(result.epoch_seconds, 1),
            "train_images_per_second": round(result.images_per_second, 1),
            "params": result.params,
            "train_gflop_per_image": round(result.flops_per_image / 1e9, 3),
            "train_compute_tflop": round(compute_tflop, 1),
            "train_images": int(len(train_xy[0])),
            "labels": cfg["labels"],
            "val_images": int(len(val_xy[0])),
            "dropped_by_target": dropped,
        }
        write_json(metrics, summary)
        mlflow.log_metrics({"best_val_accuracy": result.best_val_accuracy, "train_seconds": result.seconds,
                            "epoch_seconds_mean": result.epoch_seconds,  # per epoch: "epoch_seconds"
                            "train_images_per_second": result.images_per_second,
                            "train_gflop_per_image": result.flops_per_image / 1e9,
                            "train_compute_tflop": compute_tflop})
        mlflow.set_tags({"param_count": str(result.params), "train_seconds": f"{result.seconds:.1f}"})
        mlflow.log_artifact(history, "history")
        tracking.log_model(result.model)
        tracking.write_run_info(run_info, run.info.run_id, run.info.experiment_id)
    print(f"best val accuracy {summary['best_val_accuracy']:.4f} at epoch {summary['best_epoch']}; "
          f"{summary['train_seconds']:.0f} s ({summary['train_images_per_second']:.0f} images/s in training "
          f"steps, {summary['epoch_seconds']:.0f} s per epoch); MLflow run {run.info.run_id}")
    return summary
