"""DVC stage export: the Keras model -> LiteRT, with a test-accuracy parity check (paths: dvc.yaml)."""

from fer_pipeline.stage import run_stage

if __name__ == "__main__":
    run_stage("export", "fer_pipeline.export:run_export")
