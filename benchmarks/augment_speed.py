"""Speed of the training augmentation alone, this checkout against another revision, in one run.

    python benchmarks/augment_speed.py [--ref f5cd13f] [--batches 200] [--repeats 3]

Times ``augment_batch`` (params.yaml's augmentation; whole faces, 44x44 and 40x40 crops) on batches of
64 random faces, for this checkout's ``augment.py`` and for ``augment.py`` at ``--ref`` (loaded
from git). f5cd13f called ``tf.raw_ops.ImageProjectiveTransformV3`` directly; this checkout calls
``keras.ops.image.affine_transform``, which runs the same kernel. Prints images/s (mean and
spread of the repeats) and the ratio.
"""

import argparse
import statistics
import time

import numpy as np
import tensorflow as tf
from records import add_argument, record, table
from revision import module_at

from fer_pipeline import augment as current
from fer_pipeline.params import load


def rate(mod, section: dict, crop: int, batches: int) -> float:
    cfg = mod.AugmentConfig.from_params(section, crop)
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (64, 48, 48, 1)).astype(np.float32))
    fn = tf.function(lambda b, s: mod.augment_batch(b, cfg, s))
    fn(x, tf.constant([0, 0], tf.int64))  # trace
    t = time.perf_counter()
    for i in range(batches):
        fn(x, tf.constant([0, i], tf.int64)).numpy()
    return 64 * batches / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default="f5cd13f")
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    add_argument(ap)
    a = ap.parse_args()
    section = load(["preprocess.augment"])["preprocess"]["augment"]
    ref = module_at(a.ref, "src/fer_pipeline/augment.py")
    print(f"{'input':>10} {'this checkout':>22} {a.ref + ' (raw op)':>22} {'ratio':>6}")
    rows = []
    for crop in (48, 44, 40):
        runs = {"new": [], "ref": []}
        for _ in range(a.repeats):  # interleaved, so that a slow minute hits both
            runs["new"].append(rate(current, section, crop, a.batches))
            runs["ref"].append(rate(ref, section, crop, a.batches))
        cells = [f"{statistics.mean(r):8.0f} ({min(r):.0f}-{max(r):.0f})" for r in (runs["new"], runs["ref"])]
        print(f"{f'{crop}x{crop}':>10} {cells[0]:>22} {cells[1]:>22} "
              f"{statistics.mean(runs['new']) / statistics.mean(runs['ref']):6.2f}", flush=True)
        rows.append([f"{crop}x{crop}", *cells, round(statistics.mean(runs["new"]) / statistics.mean(runs["ref"]), 2)])
    record(a, "augment_speed", [table(f"Augmentation, images/s (mean, range of {a.repeats} repeats)",
                                      ["input", "this checkout", f"{a.ref} (raw op)", "ratio"], rows)])


if __name__ == "__main__":
    main()
