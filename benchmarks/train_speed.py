"""Training cost of the default model and of candidates, measured in one run on one machine.

    python benchmarks/train_speed.py [--steps 30] [--warmup 5] [--repeats 2]
    python benchmarks/train_speed.py --feeds [--ref cfdf8f0] [--steps 30] [--repeats 3]

For each model and input (crop) size, and for faces scaled down as progressive resizing's first
epochs train on them (``train.progressive``): training FLOPs per image (counted from the layers), images/s
of training steps with the tf.data pipeline and augmentation from params.yaml (random pixels), and
both as ratios to today's default (the first row), so that a candidate's budget can be stated as
compute and its time as a ratio measured beside the default on the same machine. Each timing is
repeated; the spread is printed (this kind of machine varies by up to 30% within minutes).

``--feeds``: the default model's step rate by input path and backend, interleaved repeats in one run:
TensorFlow with ``tf.data`` (this checkout, and with ``augment.py`` at ``--ref``: before the
augmentation was split into draws and ``keras.ops`` pixel work), TensorFlow with
``inputs.FaceBatches`` (the backend-neutral input), and Keras on JAX with ``FaceBatches`` (a child
process: the backend is fixed per process), each as a ratio to the first.
"""

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from records import add_argument, record, table

from fer_pipeline import augment
from fer_pipeline.augment import AugmentConfig
from fer_pipeline.inputs import FaceBatches, make_dataset
from fer_pipeline.models import build_model, training_flops_at
from fer_pipeline.params import load
from fer_pipeline.training import make_optimizer

# (label, model name, model kwargs override, crop size, batch, side the faces are scaled to or None)
CANDIDATES = [
    ("default", None, {}, 48, None, None),
    ("crop 44", None, {}, 44, None, None),
    ("crop 40", None, {}, 40, None, None),
    ("seed VGG-16", "vgg16", {}, 48, 32, None),
    # width/depth at about equal compute (issue 12)
    ("deep c40", None, {"widths": [24, 48, 96, 192], "convs_per_stage": 3}, 40, None, None),
    ("5-stage", None, {"widths": [24, 48, 96, 192, 384]}, 48, None, None),
    # the default model in progressive resizing's small epochs (train.progressive.size 32)
    ("scaled 32", None, {}, 48, None, 32),
]


def images_per_second(name: str, kwargs: dict, crop: int, batch: int, steps: int, warmup: int,
                      aug: AugmentConfig, train_cfg: dict, scale: int | None) -> tuple[float, int, int]:
    import keras

    model = build_model(name, crop, any_size=bool(scale), **kwargs)
    model.compile(optimizer=make_optimizer(train_cfg, steps, 1),
                  loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"], jit_compile=False)
    n = batch * (steps + warmup)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 48, 48, 1), dtype=np.uint8)
    y = rng.integers(0, 7, n)
    ds = make_dataset(x, y, batch, training=True, aug=dataclasses.replace(aug, crop_size=crop),
                      shrink=(n * 10, scale) if scale else None)  # every batch scaled down
    model.fit(ds, steps_per_epoch=warmup, epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    flops = training_flops_at(name, scale or crop, **kwargs)
    return batch * steps / (time.perf_counter() - t), model.count_params(), flops


def feed_rate(feed: str, steps: int, warmup: int, p: dict) -> float:
    """Images/s of the default model's training steps fed by ``feed`` (tf.data | FaceBatches)."""
    import keras

    train = p["train"]
    aug = AugmentConfig.from_params(p["preprocess"]["augment"], train["crop_size"])
    name, batch = train["model"]["name"], train["batch_size"]
    model = build_model(name, train["crop_size"], **train["model"][name])
    model.compile(optimizer=make_optimizer(train, steps, 1), loss=keras.losses.CategoricalCrossentropy(),
                  metrics=["accuracy"], jit_compile=keras.backend.backend() != "tensorflow")
    n = batch * (steps + warmup)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (n, 48, 48, 1), dtype=np.uint8), rng.integers(0, 7, n)
    ds = make_dataset(x, y, batch, True, aug) if feed == "tf.data" else FaceBatches(x, y, batch, aug)
    model.fit(ds, steps_per_epoch=warmup, epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return batch * steps / (time.perf_counter() - t)


def feeds(a, p: dict) -> None:
    from revision import module_at

    ref = module_at(a.ref, "src/fer_pipeline/augment.py")
    mine = augment.augment_batch

    def tf_ref() -> float:
        augment.augment_batch = ref.augment_batch  # make_dataset imports it at call time
        try:
            return feed_rate("tf.data", a.steps, a.warmup, p)
        finally:
            augment.augment_batch = mine

    def jax() -> float:
        env = {**os.environ, "KERAS_BACKEND": "jax"}
        out = subprocess.run([sys.executable, __file__, "--child-jax", "--steps", str(a.steps),
                              "--warmup", str(a.warmup)], env=env, capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])

    rows = {"TensorFlow, tf.data (this checkout)": lambda: feed_rate("tf.data", a.steps, a.warmup, p),
            f"TensorFlow, tf.data (augment.py at {a.ref})": tf_ref,
            "TensorFlow, FaceBatches": lambda: feed_rate("FaceBatches", a.steps, a.warmup, p),
            "JAX, FaceBatches": jax}
    rates = {k: [] for k in rows}
    for r in range(a.repeats):  # interleaved, so that a slow minute hits every row
        for k, fn in rows.items():
            rates[k].append(fn())
            print(f"repeat {r + 1}: {k}: {rates[k][-1]:.1f} images/s", file=sys.stderr, flush=True)
    base = statistics.mean(next(iter(rates.values())))
    print(f"{'input (default model, batch ' + str(p['train']['batch_size']) + ')':>45} {'images/s':>18} {'ratio':>6}")
    rows_out = []
    for k, v in rates.items():
        print(f"{k:>45} {statistics.mean(v):7.1f} ({min(v):.0f}-{max(v):.0f}) {statistics.mean(v) / base:6.2f}")
        rows_out.append([k, round(statistics.mean(v), 1), f"{min(v):.0f}-{max(v):.0f}",
                         round(statistics.mean(v) / base, 2)])
    record(a, "train_speed-feeds", [table(
        f"Default model, batch {p['train']['batch_size']}: training steps by input and backend "
        f"({a.steps} steps after {a.warmup} warm-up, {a.repeats} interleaved repeats)",
        ["input", "images/s", "range", "x first row"], rows_out)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="labels to run (default: all)")
    ap.add_argument("--feeds", action="store_true", help="compare input paths and backends (see above)")
    ap.add_argument("--ref", default="cfdf8f0", help="--feeds: the revision whose augment.py is 'before'")
    ap.add_argument("--child-jax", action="store_true", help=argparse.SUPPRESS)
    add_argument(ap)
    a = ap.parse_args()
    p = load(["preprocess.augment", "train"])
    if a.child_jax:
        print(feed_rate("FaceBatches", a.steps, a.warmup, p))
        return
    if a.feeds:
        return feeds(a, p)
    train = p["train"]
    aug = AugmentConfig.from_params(p["preprocess"]["augment"], 48)
    default = train["model"]["name"]
    base, rows = None, []
    print(f"{'candidate':>12} {'params':>7} {'GFLOP/img':>9} {'x default':>9} {'images/s':>16} {'x default':>9}")
    for label, name, over, crop, batch, scale in CANDIDATES:
        if a.only and label not in a.only:
            continue
        name = name or default
        kwargs = {**train["model"][name], **over}
        rates = []
        for _ in range(a.repeats):
            ips, params, flops = images_per_second(name, kwargs, crop, batch or train["batch_size"], a.steps,
                                                   a.warmup, aug, train, scale)
            rates.append(ips)
        mean = statistics.mean(rates)
        if base is None:
            base = (flops, mean)
        spread = f"{min(rates):.0f}-{max(rates):.0f}"
        print(f"{label:>12} {params / 1e6:6.2f}M {flops / 1e9:9.3f} {flops / base[0]:9.2f} "
              f"{mean:7.1f} ({spread:>7}) {mean / base[1]:9.2f}", flush=True)
        rows.append([label, round(params / 1e6, 2), round(flops / 1e9, 3), round(flops / base[0], 2), round(mean, 1),
                     spread, round(mean / base[1], 2)])
    print(f"budget: today's default = {base[0] / 1e9:.3f} GFLOP/img x 28,006 images x {train['epochs']} epochs "
          f"= {base[0] * 28006 * train['epochs'] / 1e12:.0f} TFLOP")
    record(a, "train_speed", [table(f"Training steps of {a.steps} after {a.warmup} warm-up, {a.repeats} repeats",
                                    ["candidate", "params (M)", "GFLOP/img", "x default", "images/s", "spread",
                                     "x default"], rows)])


if __name__ == "__main__":
    main()
