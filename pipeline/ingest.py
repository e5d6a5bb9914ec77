"""DVC stage ingest: the raw archive and the FER+ votes -> image array + manifest (paths: dvc.yaml)."""

from fer_pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage("ingest", "fer_pipeline.data:run_ingest")
