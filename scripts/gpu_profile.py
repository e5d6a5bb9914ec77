"""Measure the GPU profile (params.yaml ``train.profile: gpu``) on a GPU machine without TensorFlow.

The train stage feeds the model through tf.data, so it needs TensorFlow. The GPU machine this was
measured on has JAX and no TensorFlow, and cannot fetch packages. This script therefore trains the
same model (``models.build_model`` on ``train.gpu_overrides``) with the same optimizer, schedule,
EMA and best-on-val restore (``training.make_optimizer``, ``training.callbacks``), using Keras 3's
JAX backend. One thing differs: where the augmentation runs. One Keras layer (``face_augment``) does
it inside the training step on the GPU, with Keras's random numbers: flip, then rotation, zoom,
translation and the random crop as one affine resampling whose geometry is the pipeline's own
(``augment.affine_transforms``, reflect fill), then Keras's ``RandomErasing`` (noise fill, where
the pipeline fills with the face's mean). A first version chained Keras's affine layers and its
``RandomCrop``: 7-9x slower, and ``RandomCrop`` does not compile under ``jax.jit``
(``benchmarks/gpu_augment_speed.py``).

    python scripts/gpu_profile.py pack data/processed .gpudata        # lossless PNG mosaics + labels
    KERAS_BACKEND=jax python scripts/gpu_profile.py train .gpudata OUT --budget-s 400 \\
        -S preprocess.augment.erasing_prob=0.5

``train`` first measures the training rate on a throwaway copy of the model: the default CPU
profile's model too, so the two can be compared on one device. It then runs as many epochs of the
cosine schedule as fit in ``--budget-s``, up to the profile's ``epochs``. A slower device runs a
shorter schedule to its end; it is not cut off in the middle of one. It writes OUT/gpu_profile.json
(figures, epochs, per-epoch history) and the best-on-val model, split into parts under 15 MB.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

SPLITS = ("train", "val", "test")
COLS = 128          # faces per mosaic row
PART_BYTES = 15 * 2**20


def pack(src: Path, dst: Path) -> None:
    """Each split of ``src`` (the preprocess stage's .npz) as one lossless PNG mosaic and its labels:
    about 30% smaller than the raw pixels. Uploads to the GPU machine are limited to 64 MiB."""
    from PIL import Image

    dst.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        with np.load(src / f"{split}.npz") as d:
            x, y = d["x"][..., 0], d["y"]
        rows = -(-len(x) // COLS)
        x = np.concatenate([x, np.zeros((rows * COLS - len(x), 48, 48), np.uint8)])
        mosaic = x.reshape(rows, COLS, 48, 48).transpose(0, 2, 1, 3).reshape(rows * 48, COLS * 48)
        Image.fromarray(mosaic).save(dst / f"{split}.png", optimize=True)
        np.save(dst / f"{split}_y.npy", y.astype(np.uint8))
        print(f"{split}: {len(y):,} faces -> {(dst / f'{split}.png').stat().st_size / 1e6:.1f} MB")


def unpack(src: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of ``pack``: (uint8 faces (n, 48, 48, 1), int64 labels)."""
    from PIL import Image

    y = np.load(src / f"{split}_y.npy").astype(np.int64)
    mosaic = np.asarray(Image.open(src / f"{split}.png").convert("L"))
    rows = mosaic.shape[0] // 48
    x = mosaic.reshape(rows, 48, COLS, 48).transpose(0, 2, 1, 3).reshape(-1, 48, 48, 1)
    return np.ascontiguousarray(x[:len(y)]), y


def load_params(overrides: list[str]) -> dict:
    """params.yaml with ``train.profile: gpu`` and then ``-S key=value`` overrides (as
    ``dvc exp run -S`` edits the file), validated by the pipeline's own schema."""
    import yaml

    from fer_pipeline.params import validate_params

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["train"]["profile"] = "gpu"
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: -S {item}: expected key=value")
        *parents, leaf = key.split(".")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return validate_params(raw)


def augmenter(aug: dict, crop_size: int, seed: int):
    """A Keras layer doing ``preprocess.augment`` and the random crop in training (identity in
    inference: the model's own ``CenterCrop`` handles whole faces); None when there is nothing to do.
    Computes in float32 whatever the compute policy."""
    import keras
    from keras import layers, ops

    from fer_pipeline.augment import FILL_MODE, affine_transforms

    if aug["enabled"] and aug["mixup_alpha"]:
        raise SystemExit("error: mixup is not ported to this script; set preprocess.augment.mixup_alpha=0")
    on = aug["enabled"]
    flip = on and aug["flip"]
    rotation, zoom, translation = (float(aug[k]) if on else 0.0 for k in ("rotation", "zoom", "translation"))
    affine = bool(rotation or zoom or translation or crop_size < 48)
    erasing = on and aug["erasing_prob"]
    if not (flip or affine or erasing):
        return None

    class FaceAugment(keras.layers.Layer):
        def __init__(self):
            super().__init__(name="face_augment", dtype="float32")
            self.gen = keras.random.SeedGenerator(seed)
            self.erase = layers.RandomErasing(factor=(aug["erasing_prob"],) * 2, scale=(0.02, aug["erasing_max_area"]),
                                              value_range=(0, 255), seed=seed + 5, dtype="float32") if erasing else None

        def call(self, x, training=None):
            if not training:
                return x
            n, side = ops.shape(x)[0], x.shape[1]

            def uniform(shape, low=-1.0, high=1.0):
                return keras.random.uniform(shape, low, high, seed=self.gen)

            if flip:
                x = ops.where(uniform((n, 1, 1, 1), 0.0, 1.0) < 0.5, ops.flip(x, axis=2), x)
            if affine:
                offset = uniform((n, 2), 0.0, float(side - crop_size)) if crop_size < side else None
                transforms = affine_transforms(uniform((n,)) * (rotation * 2 * math.pi), 1.0 + uniform((n,)) * zoom,
                                               uniform((n, 2)) * translation, offset, float(side), float(side))
                x = ops.image.affine_transform(x, transforms, interpolation="bilinear", fill_mode=FILL_MODE)
                x = x[:, :crop_size, :crop_size, :]
            return self.erase(x, training=True) if self.erase is not None else x

    return FaceAugment()


def build(params: dict, steps_per_epoch: int, epochs: int, steps_per_execution: int):
    """(model that takes 48x48 faces, its training wrapper with the augmentation in front)."""
    import keras

    from fer_pipeline.models import build_model
    from fer_pipeline.training import make_optimizer

    cfg = params["train"]
    crop = int(cfg["crop_size"])
    name = cfg["model"]["name"]
    model = build_model(name, crop, **cfg["model"][name])
    inputs = keras.Input((48, 48, 1), name="faces")
    aug = augmenter(params["preprocess"]["augment"], crop, int(cfg["seed"]))
    trainer = keras.Model(inputs, model(aug(inputs) if aug else inputs), name="trainer")
    trainer.compile(optimizer=make_optimizer(cfg, steps_per_epoch, epochs),
                    loss=keras.losses.CategoricalCrossentropy(label_smoothing=float(cfg["label_smoothing"])),
                    metrics=["accuracy"], steps_per_execution=steps_per_execution)
    return model, trainer


def epoch_timer(verbose: bool = False):
    """A Keras callback that keeps each epoch's wall time in ``.times`` (keras is imported late)."""
    import keras

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.t0)
            if verbose:
                print(f"  epoch {epoch + 1}: {self.times[-1]:.2f} s", flush=True)

    return EpochTimes()


def measure_rate(params: dict, x: np.ndarray, onehot: np.ndarray, steps: int, spe: int) -> dict:
    """Training images/s of a throwaway copy: 3 epochs of ``steps`` steps; the first holds the
    compilation; the rate is the best of the other two (their spread is reported)."""
    import keras

    batch = int(params["train"]["batch_size"])
    n = min(len(x), steps * batch)
    _, trainer = build(params, math.ceil(n / batch), 3, spe)
    times = epoch_timer(verbose=True)
    trainer.fit(x[:n], onehot[:n], batch_size=batch, epochs=3, callbacks=[times], verbose=0)
    keras.backend.clear_session()
    rates = [n / t for t in times.times[1:]]
    return {"images_per_second": round(max(rates), 1), "spread": [round(r, 1) for r in rates],
            "first_epoch_seconds": round(times.times[0], 2), "steady_epoch_seconds": round(min(times.times[1:]), 3),
            "images": n}


def device_name() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        d = jax.devices()[0]
        return f"{d.platform}: {getattr(d, 'device_kind', d)}"
    return keras.backend.backend()


def split_file(path: Path) -> list[str]:
    data = path.read_bytes()
    names = []
    for i in range(0, len(data), PART_BYTES):
        part = path.with_name(f"{path.name}.part{i // PART_BYTES}")
        part.write_bytes(data[i:i + PART_BYTES])
        names.append(part.name)
    path.unlink()
    return names


def train(args) -> dict:
    import keras

    from fer_pipeline.labels import NUM_CLASSES
    from fer_pipeline.metrics import evaluate_model, wilson_interval
    from fer_pipeline.models import training_flops_per_image
    from fer_pipeline.training import callbacks, history_rows

    t_start = time.perf_counter()
    params = load_params(args.set)
    cfg = params["train"]
    if cfg["progressive"]["epochs"]:
        raise SystemExit("error: progressive resizing is not ported to this script; set train.progressive.epochs=0")
    if args.bf16:
        keras.config.set_dtype_policy("mixed_bfloat16")
    keras.utils.set_random_seed(int(cfg["seed"]))
    data = {s: unpack(Path(args.data), s) for s in SPLITS}
    x, y = data["train"]
    x = x.astype(np.float32)
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[y]
    val = (data["val"][0].astype(np.float32), np.eye(NUM_CLASSES, dtype=np.float32)[data["val"][1]])
    batch, max_epochs = int(cfg["batch_size"]), int(cfg["epochs"])
    steps = math.ceil(len(x) / batch)
    print(f"device {device_name()}, Keras {keras.__version__} on {keras.backend.backend()}, "
          f"policy {keras.config.dtype_policy().name}", flush=True)

    rates = {}
    if args.baseline:  # the CPU profile's model, measured on this device in this run
        base_params = load_params(["train.profile=cpu"])
        rates["cpu_profile_model"] = measure_rate(base_params, x, onehot, args.rate_steps, args.steps_per_execution)
        print(f"cpu profile model: {rates['cpu_profile_model']}", flush=True)
    rates["this_recipe"] = rate = measure_rate(params, x, onehot, args.rate_steps, args.steps_per_execution)
    print(f"this recipe: {rate}", flush=True)

    # Epoch time: the training steps at the measured rate plus validation (a forward pass, about a
    # third of a training step per image); the first epoch also compiles (about as long as the
    # calibration's first epoch).
    epoch_s = len(x) / rate["images_per_second"] + len(val[0]) / (3 * rate["images_per_second"]) + 0.5
    compile_s = 2 * rate["first_epoch_seconds"]
    left = args.budget_s - (time.perf_counter() - t_start) - compile_s
    epochs = max(1, min(max_epochs, int(left / epoch_s)))
    print(f"{epochs} epochs of {max_epochs} fit in the budget ({epoch_s:.1f} s per epoch estimated)", flush=True)

    keras.utils.set_random_seed(int(cfg["seed"]))  # the same start whether or not rates were measured
    model, trainer = build(params, steps, epochs, args.steps_per_execution)
    cbs, best, log = callbacks(int(cfg["patience"]), epochs, bool(cfg["ema"]), mlflow_logging=False)
    times = epoch_timer()
    t0 = time.perf_counter()
    hist = trainer.fit(x, onehot, batch_size=batch, epochs=epochs, validation_data=val,
                       callbacks=[times, *cbs], verbose=0)
    fit_s = time.perf_counter() - t0
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    ran = len(history["loss"])

    metrics, _ = evaluate_model(model, {"val": data["val"], "test": data["test"]}, tta=True,
                                shift_px=int(params["evaluate"]["tta_shift_px"]))
    n_test = len(data["test"][1])
    lo, hi = wilson_interval(round(metrics["test"]["accuracy"] * n_test), n_test)
    flops = training_flops_per_image(model)
    images_seen = ran * steps * batch
    summary = {
        "device": device_name(),
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "dtype_policy": keras.config.dtype_policy().name,
        "command": " ".join(sys.argv),
        "train": cfg,
        "augment": params["preprocess"]["augment"],
        "budget_s": args.budget_s,
        "epochs_planned": epochs,
        "epochs_run": ran,
        "best_epoch": best.best_epoch + 1,
        "best_val_accuracy": round(float(best.best), 4),
        "val_accuracy": metrics["val"]["accuracy"],
        "val_tta_accuracy": metrics["val"]["tta_accuracy"],
        "test_accuracy": metrics["test"]["accuracy"],
        "test_accuracy_ci95": [round(lo, 4), round(hi, 4)],
        "test_tta_accuracy": metrics["test"]["tta_accuracy"],
        "test_tta_views": metrics["test"]["tta_views"],
        "test_macro_f1": metrics["test"]["macro_f1"],
        "params": int(model.count_params()),
        "train_gflop_per_image": round(flops / 1e9, 3),
        "train_compute_tflop": round(flops * images_seen / 1e12, 1),
        "fit_seconds": round(fit_s, 1),
        "step_seconds": round(log.step_seconds, 1),
        "train_images_per_second": round(images_seen / max(log.step_seconds, 1e-9), 1),
        "epoch_seconds": [round(t, 2) for t in times.times],
        "rates": rates,
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "history": history_rows(history),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.save_model:
        model.save(out / "gpu_model.keras")
        summary["model_parts"] = split_file(out / "gpu_model.keras")
    (out / "gpu_profile.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("history", "train", "augment")}, indent=1))
    return summary


def rates(args) -> None:
    """Training images/s of each ``--case`` (overrides separated by ";"), one line each."""
    import keras

    from fer_pipeline.labels import NUM_CLASSES

    if args.bf16:
        keras.config.set_dtype_policy("mixed_bfloat16")
    x, y = unpack(Path(args.data), "train")
    x, onehot = x.astype(np.float32), np.eye(NUM_CLASSES, dtype=np.float32)[y]
    print(f"device {device_name()}, policy {keras.config.dtype_policy().name}", flush=True)
    out = []
    for case in args.case:
        t0 = time.perf_counter()
        r = measure_rate(load_params([c for c in case.split(";") if c]), x, onehot, args.rate_steps,
                         args.steps_per_execution)
        out.append({"case": case, **r, "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(out[-1]), flush=True)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "rates.json").write_text(json.dumps(out, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="preprocessed .npz splits -> lossless PNG mosaics + labels")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    t = sub.add_parser("train", help="train the GPU profile within a time budget; write OUT/gpu_profile.json")
    t.add_argument("data", help="a folder written by pack")
    t.add_argument("out")
    t.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                   help="params.yaml override, as dvc exp run -S (repeatable)")
    t.add_argument("--budget-s", type=float, default=400.0, help="wall seconds for everything before evaluation")
    t.add_argument("--rate-steps", type=int, default=40, help="steps per epoch of the rate measurement")
    t.add_argument("--steps-per-execution", type=int, default=4)
    t.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="mixed bfloat16 compute (float32 weights)")
    t.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure the CPU profile's model on this device")
    t.add_argument("--save-model", action=argparse.BooleanOptionalAction, default=True)
    r = sub.add_parser("rates", help="training images/s of several override sets on this device")
    r.add_argument("data")
    r.add_argument("out")
    r.add_argument("--case", action="append", default=[], help="KEY=VALUE overrides separated by ';'")
    r.add_argument("--rate-steps", type=int, default=40)
    r.add_argument("--steps-per-execution", type=int, default=1)
    r.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args(argv)
    from fer_pipeline.errors import FerError

    try:
        if args.cmd == "pack":
            pack(args.src, args.dst)
        elif args.cmd == "rates":
            rates(args)
        else:
            train(args)
    except FerError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
