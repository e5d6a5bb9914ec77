"""DVC stage validate: Great Expectations checks on the ingested data (paths: dvc.yaml)."""

from fer_pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage("validate", "fer_pipeline.validation:run_validate")
