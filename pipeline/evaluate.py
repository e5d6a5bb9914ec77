"""DVC stage evaluate: test/val metrics with intervals, figures, the registry decision (paired test on
val against the champion) and the model card, logged to the training run (paths: dvc.yaml)."""

from fer_pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage("evaluate", "fer_pipeline.evaluation:run_evaluate")
