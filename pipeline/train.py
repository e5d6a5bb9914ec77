"""DVC stage train: fit the model chosen in params.yaml, log the run to MLflow (paths: dvc.yaml)."""

from fer_pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage("train", "fer_pipeline.training:run_train")
