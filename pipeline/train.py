"""DVC stage train: fit the model chosen in params.yaml, log the run to MLflow (paths: dvc.yaml)."""

from fer_pipeline.stage import run_stage
from fer_pipeline.training import run_train

if __name__ == "__main__":
    run_stage("train", run_train)
