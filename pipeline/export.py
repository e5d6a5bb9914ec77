"""DVC stage export: the Keras model -> LiteRT (.tflite), with a test-accuracy parity check (paths: dvc.yaml)."""

from fer_pipeline.errors import FerError
from fer_pipeline.export import run_export
from fer_pipeline.fsutil import write_json
from fer_pipeline.stage import run_stage


def main(params: dict, *, model: str, data: str, tflite: str, report: str) -> None:
    p = params["export"]
    r = run_export(model, tflite, data, p["quantize"], max_drop=p["max_drop_points"] / 100)
    write_json(report, r)
    print(f"{tflite}: {r['tflite_bytes'] / 1e6:.2f} MB ({r['quantize']}); test accuracy keras "
          f"{r['test_accuracy_keras']:.4f}, tflite {r['test_accuracy_tflite']:.4f} "
          f"(drop {r['accuracy_drop_points']} pt)")
    if not r["parity_ok"]:
        raise FerError(f"TFLite accuracy drop {r['accuracy_drop_points']} pt exceeds {p['max_drop_points']} pt")


if __name__ == "__main__":
    run_stage("export", main)
