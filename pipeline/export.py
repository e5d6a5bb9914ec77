"""DVC stage export: models/model.keras -> models/model.tflite, with a test-accuracy parity check."""

from fer_pipeline.cli import run_stage
from fer_pipeline.errors import FerError
from fer_pipeline.export import run_export
from fer_pipeline.fsutil import write_json


def main(params: dict) -> None:
    p = params["export"]
    r = run_export("models/model.keras", "models/model.tflite", "data/processed", p["quantize"],
                   max_drop=p["max_drop_points"] / 100)
    write_json("reports/tflite.json", r)
    print(f"models/model.tflite: {r['tflite_bytes'] / 1e6:.2f} MB ({r['quantize']}); test accuracy keras "
          f"{r['test_accuracy_keras']:.4f}, tflite {r['test_accuracy_tflite']:.4f} (drop {r['accuracy_drop_points']} pt)")
    if not r["parity_ok"]:
        raise FerError(f"TFLite accuracy drop {r['accuracy_drop_points']} pt exceeds {p['max_drop_points']} pt")


if __name__ == "__main__":
    run_stage("export", main)
