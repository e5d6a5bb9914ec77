"""Training: optimizer and schedule, best-on-val checkpoint, MLflow logging, on either Keras backend.

``cfg`` is the validated ``train`` section of params.yaml (``fer_pipeline.params``): every value
comes from there, none is defaulted here. The same stage runs under ``KERAS_BACKEND=tensorflow``
(the CPU default, fed by ``tf.data``) and ``KERAS_BACKEND=jax`` (GPUs and several processes, fed
by ``inputs.FaceBatches``; TensorFlow need not be installed): same model builders, augmentation,
callbacks, MLflow run and outputs. TensorFlow is imported only on its backend's path."""

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

from .distribute import Heartbeat, Placement, place
from .errors import FerError
from .fsutil import atomic_path, write_json

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
    """Keras's, numpy's and Python's seeds; ``deterministic`` adds TensorFlow's op determinism (on
    JAX, CPU results are deterministic already)."""
    keras.utils.set_random_seed(seed)
    if deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


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

    def __init__(self, epochs: int, quiet: bool = False):
        super().__init__()
        self.epochs, self.step_seconds, self.t0, self.t_val, self.quiet = epochs, 0.0, 0.0, None, quiet

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
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        logs["epoch_seconds"] = now - self.t0
        if self.quiet:
            return
        print(f"epoch {epoch + 1:3d}/{self.epochs}  loss {logs['loss']:.4f}  acc {logs['accuracy']:.4f}  "
              f"val_loss {logs.get('val_loss', float('nan')):.4f}  "
              f"val_acc {logs.get('val_accuracy', float('nan')):.4f}  "
              f"lr {logs['learning_rate']:.2e}  {logs['epoch_seconds']:.0f}s", flush=True)


def ema_settling_epochs(momentum: float, steps: int) -> int:
    """Epochs until the first steps' weights count for under a tenth of Keras's weight average
    (``momentum ** (epochs * steps) < 0.1``); 0 without EMA. Until then the average is mostly an
    untrained model (an EMA run scores about one class on val for its first 3-5 epochs:
    docs/known-issues.md), so early stopping does not watch those epochs."""
    if not momentum:
        return 0
    return math.ceil(math.log(0.1) / math.log(momentum) / steps)


def callbacks(patience: int, epochs: int, ema: float, steps: int, mlflow_logging: bool, quiet: bool = False):
    """``(callbacks, best, log)``. ``best`` is Keras's ``EarlyStopping`` on val accuracy with
    ``restore_best_weights``, which restores the best epoch's weights at the end whether or not it
    stopped early (``patience`` 0 = never stop); with EMA (``ema`` = its momentum) it starts
    watching after ``ema_settling_epochs`` (never later than the last epoch). Per-epoch metrics go
    to MLflow through ``mlflow.keras.MlflowCallback`` (step = epoch index, from 0). ``quiet``: no
    epoch lines (the processes of a multi-process run other than the first)."""
    log = EpochLog(epochs, quiet)
    best = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", restore_best_weights=True,
                                         patience=patience or epochs,
                                         start_from_epoch=min(ema_settling_epochs(ema, steps), epochs - 1))
    # With EMA, validation and the best-epoch snapshot see the averaged weights: SwapEMAWeights puts
    # them in the model at each epoch's end, before EarlyStopping reads them (order matters).
    cbs = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema else []
    cbs += [log, best]  # log first: the others see learning_rate and epoch_seconds in the logs
    if mlflow_logging:
        import mlflow

        cbs.append(mlflow.keras.MlflowCallback())
    return cbs, best, log


def feeds(train_xy, val_xy, cfg: dict, aug: AugmentConfig, weights: np.ndarray | None,
          placement: Placement) -> tuple[object, object, int]:
    """``(train, val, steps per epoch)``: ``tf.data`` on the TensorFlow backend, ``FaceBatches``
    on the others (``inputs``). Progressive resizing: the first ``progressive.epochs`` epochs on
    faces scaled to ``progressive.size``."""
    from .inputs import FaceBatches, make_dataset

    x, y = train_xy
    batch, seed = int(cfg["batch_size"]), int(cfg["seed"])
    steps = math.ceil(len(x) / batch)
    small_epochs = int(cfg["progressive"]["epochs"])
    shrink = (small_epochs * steps, int(cfg["progressive"]["size"])) if small_epochs else None
    if keras.backend.backend() == "tensorflow":
        return (make_dataset(x, y, batch, True, aug, weights, seed, shrink),
                make_dataset(*val_xy, batch_size=256, training=False), steps)
    if batch % placement.devices:
        raise FerError(f"train.batch_size {batch} must divide by the {placement.devices} devices "
                       f"it is split over ({placement.processes} process(es))")
    local_devices = placement.devices // placement.processes
    return (FaceBatches(x, y, batch, aug, weights, seed, shrink, (placement.rank, placement.processes)),
            FaceBatches(*val_xy, batch_size=256, pad_to=local_devices), steps)


def train(train_xy: tuple[np.ndarray, np.ndarray], val_xy: tuple[np.ndarray, np.ndarray], cfg: dict,
          aug_params: dict, class_weight: list[float] | None = None,
          mlflow_logging: bool = False, placement: Placement | None = None) -> TrainResult:
    """Build the model chosen by ``cfg['model']`` and fit it; the best-on-val weights are returned.
    ``placement`` (``distribute.place``): made by the caller when it has to exist before anything
    else runs (several processes); else made here, first thing."""
    from .augment import AugmentConfig
    from .models import build_model, training_flops_at, training_flops_per_image

    placement = placement or place(cfg["distribute"], int(cfg["distribute_timeout_s"]))
    seed_everything(int(cfg["seed"]), bool(cfg["deterministic"]))
    x, y = train_xy
    batch, epochs = int(cfg["batch_size"]), int(cfg["epochs"])
    weights = np.asarray(class_weight, np.float32)[y if y.ndim == 1 else y.argmax(1)] if class_weight else None
    aug = AugmentConfig.from_params(aug_params, int(cfg["crop_size"]))
    small_epochs, small = int(cfg["progressive"]["epochs"]), int(cfg["progressive"]["size"])
    train_ds, val_ds, steps = feeds(train_xy, val_xy, cfg, aug, weights, placement)

    name = cfg["model"]["name"]
    with placement.scope():
        model = build_model(name, int(cfg["crop_size"]), any_size=bool(small_epochs), **cfg["model"][name])
        model.compile(
            optimizer=make_optimizer(cfg, steps, epochs),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=float(cfg["label_smoothing"])),
            # XLA off on TensorFlow (slower to compile than to run here); on JAX the step must be jitted
            metrics=["accuracy"], jit_compile=keras.backend.backend() != "tensorflow")
    cbs, best, log = callbacks(int(cfg["patience"]), epochs, float(cfg["ema"]), steps, mlflow_logging,
                               quiet=not placement.chief)
    if placement.chief:
        print(f"training {name} ({model.count_params():,} params) on {len(x):,} images, "
              f"{epochs} epochs x {steps} steps of {batch} on {keras.backend.backend()}"
              + (f", {placement.devices} devices in {placement.processes} process(es)" if placement.devices > 1 else "")
              + (f"; the first {small_epochs} on faces scaled to {small}x{small}" if small_epochs else ""), flush=True)
    t0 = time.time()
    with placement.lost_peers_as_errors(), placement.watchdog(_run_failer()) as watchdog:
        if watchdog is not None:
            cbs.append(Heartbeat(watchdog))
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


def _run_failer():
    """What marks this thread's active MLflow run FAILED from another thread (the watchdog's: MLflow
    keeps the active run per thread); None when there is no run (processes other than 0)."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        return None
    run_id = run.info.run_id
    return lambda: mlflow.MlflowClient().set_terminated(run_id, status="FAILED")


def history_rows(history: dict[str, list[float]]) -> list[dict]:
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate") if k in history]
    return [{"epoch": i + 1, **{k: round(history[k][i], 6) for k in keys}} for i in range(len(history["loss"]))]


def augmentation_preview(x: np.ndarray, aug: AugmentConfig, n: int = 8, seed: int = 0):
    """A figure: each row one training face, then five versions made by the training input's
    augmentation (its pixel work, with draws from numpy: the same figure on every backend)."""
    from .augment import apply, draw_numpy
    from .plots import image_rows

    rng = np.random.default_rng(seed)
    faces = x[rng.choice(len(x), size=min(n, len(x)), replace=False)].astype(np.float32)
    versions = [keras.ops.convert_to_numpy(apply(faces, aug, draw_numpy(len(faces), aug, rng)))
                for _ in range(5)]
    return image_rows([faces, *versions], ["original"] + [f"aug {v}" for v in range(1, 6)],
                      "Training augmentation preview")


def training_targets(data: str, labels: str, fused_votes: float = 0.0):
    """``(train (x, y), val (x, y), dropped)`` under the target ``labels`` (``targets`` module): y is
    label ids for ``fer2013`` (the stream of the plain pipeline), else (n, 7) target rows; images a
    FER+ target cannot use are left out and counted per split and reason. ``fused_votes``: the
    weight of FER2013's label under ``fused``."""
    from .fsutil import load_split, load_votes
    from .targets import check_target, make_targets

    check_target(labels)
    out, dropped = [], {}
    for split in ("train", "val"):
        x, y = load_split(data, split)
        if labels == "fer2013":
            out.append((x, y))
            continue
        t = make_targets(labels, y, load_votes(data, split), training=split == "train", fused_votes=fused_votes)
        out.append((x[t.keep], t.y))
        dropped[split] = t.dropped
    return out[0], out[1], dropped


def run_train(params: dict, *, data: str, preprocess: str, model: str, run_info: str, reports: str, faces: str,
              root: str = ".") -> dict:
    """The train stage: fit on ``data``/{train,val}.npz, save the model, write ``reports``/ (metrics,
    history, curves) and ``faces``/ (the augmentation preview), log everything to a new MLflow run.
    The folders come from dvc.yaml's ``cmd``. In a run of several processes
    (``train.distribute: multi_process``) process 0 does all of that; the others train beside it
    and keep nothing (``_train_beside``)."""
    import mlflow

    from . import plots, tracking
    from .augment import AugmentConfig
    from .layout import Preprocess, Train

    cfg = params["train"]
    placement = place(cfg["distribute"], int(cfg["distribute_timeout_s"]))
    train_xy, val_xy, dropped = training_targets(data, cfg["labels"], float(cfg["fused_votes"]))
    prep = json.loads((Path(preprocess) / Preprocess.SUMMARY).read_text())  # class weights
    weights = list(prep["class_weights"].values())
    if cfg["labels"] != "fer2013" and any(w != 1.0 for w in weights):
        raise FerError(f"preprocess.class_weights are counted on FER2013's labels: with train.labels "
                       f"{cfg['labels']} set preprocess.class_weights none")
    aug_params = params["preprocess"]["augment"]
    if not placement.chief:
        return _train_beside(train_xy, val_xy, cfg, aug_params, weights, placement)

    out = Path(reports)
    tracking.setup(params["tracking"]["experiment"], root)
    with mlflow.start_run(run_name=tracking.run_name(root)) as run:
        aug = AugmentConfig.from_params(aug_params, int(cfg["crop_size"]))
        plots.publish(augmentation_preview(train_xy[0], aug), Path(faces) / Train.PREVIEW)
        _log_run_inputs(params, data, placement, train_xy, val_xy, root)
        result = train(train_xy, val_xy, cfg, aug_params, weights, mlflow_logging=True, placement=placement)
        with atomic_path(model) as tmp, placement.lost_peers_as_errors():  # temp name ends in .keras
            result.model.save(tmp)  # with several processes a collective: every process saves
        plots.publish(plots.curves(result.history), out / Train.CURVES)
        rows = history_rows(result.history)
        write_json(out / Train.HISTORY, rows)
        summary = train_summary(result, rows, cfg["labels"], len(train_xy[0]), len(val_xy[0]), dropped)
        write_json(out / Train.METRICS, summary)
        mlflow.log_metrics({"best_val_accuracy": result.best_val_accuracy, "train_seconds": result.seconds,
                            "epoch_seconds_mean": result.epoch_seconds,  # per epoch: "epoch_seconds"
                            "train_images_per_second": result.images_per_second,
                            "train_gflop_per_image": result.flops_per_image / 1e9,
                            "train_compute_tflop": result.compute_flops / 1e12})
        mlflow.set_tags({"param_count": str(result.params), "train_seconds": f"{result.seconds:.1f}"})
        mlflow.log_artifact(str(out / Train.HISTORY), "history")
        # Logging saves the model again: across processes that is a collective the others are no
        # longer in, so process 0 logs a single-process copy read back from the file.
        tracking.log_model(result.model if placement.processes == 1 else _local_copy(model))
        tracking.write_run_info(run_info, run.info.run_id, run.info.experiment_id)
    digest = f", weights sha256 {weights_digest(result.model)}" if placement.processes > 1 else ""
    print(f"best val accuracy {summary['best_val_accuracy']:.4f} at epoch {summary['best_epoch']}{digest}; "
          f"{summary['train_seconds']:.0f} s ({summary['train_images_per_second']:.0f} images/s in training "
          f"steps, {summary['epoch_seconds']:.0f} s per epoch); MLflow run {run.info.run_id}")
    return summary


def _log_run_inputs(params: dict, data: str, placement: Placement, train_xy, val_xy, root: str) -> None:
    """The training run's tags, params and datasets in MLflow."""
    import mlflow

    from . import tracking

    cfg = params["train"]
    mlflow.set_tags({**tracking.git_info(root), "stage": "train", **tracking.ci_tags(),
                     **tracking.machine_tags(),  # the CPU the run's minutes come from
                     "data_md5": tracking.data_md5([Path(data) / f"{s}.npz" for s in ("train", "val")]),
                     "dvc_exp": os.environ.get("DVC_EXP_NAME", "")})
    mlflow.log_params(tracking.flatten({k: v for k, v in params.items() if k != "tracking"}))
    mlflow.set_tags({"labels": cfg["labels"], "keras_backend": keras.backend.backend(),
                     "processes": str(placement.processes), "devices": str(placement.devices)})
    for split, (xs, ys) in (("train", train_xy), ("val", val_xy)):
        ds = mlflow.data.from_numpy(xs, targets=ys, name=f"fer2013-{split}")
        mlflow.log_input(ds, context="training" if split == "train" else "validation")


def train_summary(result, rows: list, labels: str, train_images: int, val_images: int, dropped: dict) -> dict:
    """The train stage's metrics.json: the kept epoch, time, speed, size and compute."""
    return {
        "best_val_accuracy": round(result.best_val_accuracy, 4),
        "best_epoch": result.best_epoch,
        "epochs_run": len(rows),
        "train_seconds": round(result.seconds, 1),
        "epoch_seconds": round(result.epoch_seconds, 1),
        "train_images_per_second": round(result.images_per_second, 1),
        "params": result.params,
        "train_gflop_per_image": round(result.flops_per_image / 1e9, 3),
        "train_compute_tflop": round(result.compute_flops / 1e12, 1),
        "train_images": int(train_images),
        "labels": labels,
        "val_images": int(val_images),
        "dropped_by_target": dropped,
    }


def _train_beside(train_xy, val_xy, cfg: dict, aug_params: dict, weights, placement: Placement) -> dict:
    """A process other than 0 in a multi-process run: trains its rows of every batch, takes part
    in the save (a collective) into a temporary folder, and keeps nothing."""
    import tempfile

    result = train(train_xy, val_xy, cfg, aug_params, weights, placement=placement)
    with tempfile.TemporaryDirectory() as tmp, placement.lost_peers_as_errors():
        result.model.save(Path(tmp) / "model.keras")
    print(f"{placement.who()}: done, weights sha256 {weights_digest(result.model)}; process 0 writes "
          "the outputs", flush=True)
    return {}


def weights_digest(model) -> str:
    """SHA-256 of the model's weights (shapes and bytes, in order): every process of a run prints
    it, so an operator sees that the replicas ended equal."""
    import hashlib

    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(str(w.shape).encode())
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()[:16]


def _local_copy(path: str):
    """The saved model loaded into this process alone (no distribution)."""
    keras.distribution.set_distribution(None)
    return keras.models.load_model(path)
