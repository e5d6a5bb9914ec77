"""DVC stage evaluate: test/val metrics, pictures, registry decision and model card, logged to the
MLflow run that train left in models/mlflow_run.json."""

from fer_pipeline.cli import run_stage
from fer_pipeline.evaluation import run_evaluate
from fer_pipeline.fsutil import load_params

OUT = {
    "metrics": "reports/metrics.json",
    "predictions_csv": "reports/eval/test_predictions.csv",
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
    run_stage(lambda: run_evaluate("data/processed", "models/model.keras", "models/mlflow_run.json",
                                   load_params(), OUT))
