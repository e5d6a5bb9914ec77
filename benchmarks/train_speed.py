"""Training cost of the default model and of candidates, measured in one run on one machine.

    python benchmarks/train_speed.py [--steps 30] [--warmup 5] [--repeats 2]

For each model and input (crop) size, and for faces scaled down as progressive resizing's first
epochs train on them (``train.progressive``): training FLOPs per image (counted from the layers), images/s
of training steps with the tf.data pipeline and augmentation from params.yaml (random pixels), and
both as ratios to today's default (the first row), so that a candidate's budget can be stated as
compute and its time as a ratio measured beside the default on the same machine. Each timing is
repeated; the spread is printed (this kind of machine varies by up to 30% within minutes).
"""

import argparse
import dataclasses
import statistics
import time

import numpy as np

from fer_pipeline.augment import AugmentConfig
from fer_pipeline.models import build_model, training_flops_at
from fer_pipeline.params import load
from fer_pipeline.training import make_dataset, make_optimizer

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="labels to run (default: all)")
    a = ap.parse_args()
    p = load(["preprocess.augment", "train"])
    train = p["train"]
    aug = AugmentConfig.from_params(p["preprocess"]["augment"], 48)
    default = train["model"]["name"]
    base = None
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
    print(f"budget: today's default = {base[0] / 1e9:.3f} GFLOP/img x 28,006 images x {train['epochs']} epochs "
          f"= {base[0] * 28006 * train['epochs'] / 1e12:.0f} TFLOP")


if __name__ == "__main__":
    main()
