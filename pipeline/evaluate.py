"""DVC stage evaluate: test/val metrics with intervals, pictures, the registry decision (paired test on
val against the champion) and the model card, logged to the MLflow run of models/mlflow_run.json."""

from fer_pipeline.cli import run_stage
from fer_pipeline.evaluation import run_evaluate

OUT = {
    "metrics": "reports/metrics.json",
    "details": "reports/evaluation.json",
    "predictions_csv": "reports/eval/test_predictions.csv",
    "val_predictions_csv": "reports/eval/val_predictions.csv",
    "confusion_png": "reports/figures/confusion_test.png",
    "grid_correct": "reports/figures/test_correct.png",
    "grid_wrong": "reports/figures/test_misclassified.png",
    "f1_png": "reports/figures/f1_per_class.png",
    "model_card": "reports/model_card.md",
    "curves": "reports/figures/training_curves.png",
    "preview": "reports/augmentation_preview.png",
    "train_metrics": "reports/train_metrics.json",
    "preprocess_report": "reports/preprocess.json",
    "validation_report": "reports/validation.json",
}

if __name__ == "__main__":
    run_stage("evaluate", lambda params: run_evaluate("data/processed", "models/model.keras",
                                                      "models/mlflow_run.json", params, OUT))
