"""DVC stage preprocess: clean and split -> one .npz per split and class weights (paths: dvc.yaml)."""

from fer_pipeline.data import load_arrays
from fer_pipeline.fsutil import write_json
from fer_pipeline.preprocess import run_preprocess
from fer_pipeline.stage import run_stage


def main(params: dict, *, interim: str, processed: str, report: str) -> None:
    images, manifest = load_arrays(interim)
    s = run_preprocess(images, manifest, params["preprocess"], processed)
    write_json(report, s)
    print(f"preprocess: {s['rows']}; dropped {s['dropped']}")


if __name__ == "__main__":
    run_stage("preprocess", main)
