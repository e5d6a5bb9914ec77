"""DVC stages photos@N: one labelled photo folder of evaluate.photo_sets, end to end (paths: dvc.yaml)."""

from fer_pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage("photos", "fer_pipeline.photo_eval:run_photos")
