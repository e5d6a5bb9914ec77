"""DVC stage ingest: the raw archive and the FER+ votes -> image array + manifest (paths: dvc.yaml)."""

from fer_pipeline.data import run_ingest
from fer_pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage("ingest", run_ingest)
