"""DVC stage export: the Keras model -> LiteRT, with a test-accuracy parity check (paths: dvc.yaml)."""

from fer_pipeline.export import run_export
from fer_pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage("export", run_export)
