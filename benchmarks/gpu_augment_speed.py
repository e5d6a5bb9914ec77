"""Speed of ``scripts/gpu_profile.py``'s augmentation on Keras's JAX backend, this checkout against
another revision, in one run.

    KERAS_BACKEND=jax python benchmarks/gpu_augment_speed.py [--ref a35c776] [--repeats 15]

Needs JAX (the GPU machine's stack, or ``pip install jax`` on a CPU). a35c776 chained Keras's
``RandomFlip``, ``RandomRotation``, ``RandomZoom``, ``RandomTranslation``, ``RandomCrop`` and
``RandomErasing`` layers; this checkout makes one affine resampling per image with the pipeline's
geometry, then ``RandomErasing``. For params.yaml's augmentation (erasing at 0.5, as the GPU recipe
sets it) on whole faces and 40x40 crops, it jit-compiles each version's training-mode call on a
batch of 128 faces and prints the compile time and the median, min and max time per batch. A
version that fails under ``jax.jit`` is reported with its error's first line.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from revision import REPO, module_at  # noqa: E402

sys.path[:0] = [str(REPO / "scripts"), str(REPO / "src")]
import gpu_profile  # noqa: E402

from fer_pipeline.params import load  # noqa: E402


def timings(mod, aug: dict, crop: int, x: np.ndarray, repeats: int) -> str:
    layer = mod.augmenter(aug, crop, 1)
    inputs = keras.Input((48, 48, 1))
    model = keras.Model(inputs, layer(inputs))
    state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])
    step = jax.jit(lambda tv, ntv, batch: model.stateless_call(tv, ntv, batch, training=True)[0])
    t = time.perf_counter()
    try:
        jax.block_until_ready(step(*state, x))
    except Exception as exc:  # noqa: BLE001 - the benchmark reports what a version cannot do
        return f"fails under jax.jit: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
    compile_s = time.perf_counter() - t
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(step(*state, x))
        runs.append(1e3 * (time.perf_counter() - t))
    return (f"compile {compile_s:5.1f} s, per batch {statistics.median(runs):7.1f} ms "
            f"(min {min(runs):.1f}, max {max(runs):.1f})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default="a35c776")
    ap.add_argument("--repeats", type=int, default=15)
    a = ap.parse_args()
    aug = {**load(["preprocess.augment"])["preprocess"]["augment"], "erasing_prob": 0.5}
    ref = module_at(a.ref, "scripts/gpu_profile.py")
    x = np.random.default_rng(0).uniform(0, 255, (128, 48, 48, 1)).astype(np.float32)
    print(f"{jax.devices()[0].device_kind}, Keras {keras.__version__} on JAX {jax.__version__}, batch of 128")
    for crop in (48, 40):
        for label, mod in (("this checkout", gpu_profile), (a.ref, ref)):
            print(f"{crop}x{crop} {label:>14}: {timings(mod, aug, crop, x, a.repeats)}", flush=True)


if __name__ == "__main__":
    main()
