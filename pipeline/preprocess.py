"""DVC stage preprocess: clean and split -> one .npz per split (paths: dvc.yaml)."""

from fer_pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage("preprocess", "fer_pipeline.preprocess:run_preprocess")
