"""Training throughput of the default model and of the seed's VGG-16, measured in one run.

    python benchmarks/train_speed.py [--steps 30] [--warmup 5]

Uses the models and tf.data pipeline (with augmentation) from params.yaml on random pixels.
"""

import argparse
import time

import numpy as np

from fer_pipeline.augment import AugmentConfig
from fer_pipeline.fsutil import load_params
from fer_pipeline.models import build_model
from fer_pipeline.training import make_dataset, make_optimizer


def images_per_second(name: str, kwargs: dict, batch: int, steps: int, warmup: int, aug: AugmentConfig) -> tuple[float, int]:
    import keras

    model = build_model(name, **kwargs)
    model.compile(optimizer=make_optimizer({"learning_rate": 1e-3, "schedule": "constant"}, steps, 1),
                  loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"], jit_compile=False)
    n = batch * (steps + warmup)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, 48, 48, 1), dtype=np.uint8)
    y = rng.integers(0, 7, n)
    ds = make_dataset(x, y, batch, training=True, aug=aug)
    model.fit(ds, steps_per_epoch=warmup, epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return batch * steps / (time.perf_counter() - t), model.count_params()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    p = load_params()
    train = p["train"]
    aug = AugmentConfig.from_params(p["preprocess"]["augment"])
    default = train["model"]["name"]
    results = {}
    for name, batch in ((default, train["batch_size"]), ("vgg16", 32)):
        ips, params = images_per_second(name, train["model"].get(name, {}), batch, a.steps, a.warmup, aug)
        results[name] = ips
        print(f"{name:>14}: {params / 1e6:5.2f}M params, batch {batch:3d}: {ips:7.1f} train images/s "
              f"(~{28709 / ips:5.0f} s per FER2013 epoch)")
    print(f"ratio {default}/vgg16: {results[default] / results['vgg16']:.1f}x")


if __name__ == "__main__":
    main()
