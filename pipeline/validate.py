"""DVC stage validate: Great Expectations checks on the ingested data (paths: dvc.yaml)."""

from fer_pipeline.stage import run_stage
from fer_pipeline.validation import run_validate

if __name__ == "__main__":
    run_stage("validate", run_validate)
