"""DVC stage preprocess: clean and split -> data/processed/*.npz and class weights."""

from fer_pipeline.cli import run_stage
from fer_pipeline.data import load_arrays
from fer_pipeline.fsutil import write_json
from fer_pipeline.preprocess import run_preprocess


def main(params: dict) -> None:
    images, manifest = load_arrays("data/interim")
    s = run_preprocess(images, manifest, params["preprocess"], "data/processed")
    write_json("reports/preprocess.json", s)
    print(f"preprocess: {s['rows']}; dropped {s['dropped']}")


if __name__ == "__main__":
    run_stage("preprocess", main)
