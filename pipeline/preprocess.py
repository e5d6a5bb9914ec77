"""DVC stage preprocess: clean and split -> data/processed/*.npz, class weights, augmentation preview."""

from fer_pipeline.cli import run_stage
from fer_pipeline.data import load_arrays
from fer_pipeline.fsutil import load_params, write_json
from fer_pipeline.preprocess import run_preprocess


def main() -> None:
    p = load_params()["preprocess"]
    images, manifest = load_arrays("data/interim")
    s = run_preprocess(images, manifest, p, p["augment"], "data/processed", "reports/augmentation_preview.png")
    write_json("reports/preprocess.json", s)
    print(f"preprocess: {s['rows']}; dropped {s['dropped']}")


if __name__ == "__main__":
    run_stage(main)
