"""Does a refactor change what training computes? Train a tiny model on a synthetic task with this
checkout's package and with the package at another revision; compare losses and weights bit for bit.

    python scripts/same_training.py [--ref f5cd13f]

Each side runs in its own process with its own params.yaml (seeded, TF op determinism on), on whole
faces and on 40x40 crops with weight EMA. Prints one line per case and exits 1 if any differs.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CASES = [(48, 0.0), (40, 0.99)]  # (crop_size, ema)

CHILD = r"""
import json, sys
import numpy as np, yaml
src, out, crop, ema, params_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
sys.path.insert(0, src)
import fer_pipeline
assert fer_pipeline.__file__.startswith(src), fer_pipeline.__file__
from fer_pipeline.params import validate_params
from fer_pipeline.training import train

def data(n, seed):  # the class sets the brightness, with heavy noise
    r = np.random.default_rng(seed)
    y = np.arange(n) % 7
    return np.clip(r.normal(30 + 30 * y[:, None, None, None], 40, (n, 48, 48, 1)), 0, 255).astype(np.uint8), y

p = validate_params(yaml.safe_load(open(params_file)))
t = p["train"]
t.update({"epochs": 3, "batch_size": 32, "deterministic": True, "crop_size": crop, "ema": ema,
          "model": {**t["model"], "bn_vgg": {"widths": [8, 16], "convs_per_stage": 1, "dropout": 0.2, "dense": 16}}})
r = train(data(320, 0), data(140, 1), t, p["preprocess"]["augment"])
np.savez(out, *r.model.get_weights())
json.dump({"loss": r.history["loss"], "val_accuracy": r.history["val_accuracy"], "best_epoch": r.best_epoch},
          open(out + ".json", "w"))
"""


def run(src: Path, out: Path, crop: int, ema: float) -> tuple[dict, list[np.ndarray]]:
    # Each side reads its own params.yaml: a new key is an error to the older schema.
    params = src.parent / "params.yaml"
    subprocess.run([sys.executable, "-c", CHILD, str(src), str(out), str(crop), str(ema), str(params)],
                   check=True, capture_output=True, env={"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": ""})
    with np.load(out) as z:
        return json.loads(Path(str(out) + ".json").read_text()), [z[k] for k in z.files]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default="f5cd13f")
    a = ap.parse_args()
    differ = False
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "ref"
        subprocess.run(["git", "worktree", "add", "--detach", "-f", str(old), a.ref], cwd=REPO, check=True,
                       capture_output=True)
        try:
            for crop, ema in CASES:
                h_new, w_new = run(REPO / "src", Path(tmp) / f"new{crop}.npz", crop, ema)
                h_old, w_old = run(old / "src", Path(tmp) / f"old{crop}.npz", crop, ema)
                same = h_new == h_old and all(np.array_equal(x, y) for x, y in zip(w_new, w_old))
                differ |= not same
                print(f"crop {crop}, ema {ema}: {'identical' if same else 'DIFFERENT'} "
                      f"(losses {h_new['loss']} here, {h_old['loss']} at {a.ref})", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, capture_output=True)
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
