"""DVC stage train: fit the model chosen in params.yaml, log the run to MLflow."""

from fer_pipeline.cli import run_stage
from fer_pipeline.training import run_train

OUT = {
    "model": "models/model.keras",
    "run_info": "models/mlflow_run.json",
    "metrics": "reports/train_metrics.json",
    "history": "reports/train_history.json",
    "curves": "reports/figures/training_curves.png",
    "preview": "reports/augmentation_preview.png",
    "preprocess_report": "reports/preprocess.json",
}

if __name__ == "__main__":
    run_stage("train", lambda params: run_train("data/processed", params, OUT))
