"""Inference speed: batched faces/s (Keras and TFLite), and one photo end to end (detection included).

    python benchmarks/inference_speed.py [--model models/model.keras] [--tflite models/model.tflite]

Cold start = loading the model and the first photo; warm = median of later photos.
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/model.keras")
    ap.add_argument("--tflite", default="models/model.tflite")
    ap.add_argument("--faces", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=20)
    a = ap.parse_args()

    t0 = time.perf_counter()
    import cv2
    from skimage import data

    from fer_pipeline.faces import HaarFaceDetector
    from fer_pipeline.predict import analyse
    from fer_pipeline.predictor import load_predictor

    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)
    predictor = load_predictor(a.model)
    detector = HaarFaceDetector()
    analyse([("astronaut", photo)], predictor, detector)
    cold = time.perf_counter() - t0
    lat = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        res = analyse([("astronaut", photo)], predictor, detector)
        lat.append(time.perf_counter() - t)
    det = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        detector.detect(photo)
        det.append(time.perf_counter() - t)
    print(f"one 512x512 photo, {len(res[0].faces)} face: cold start {cold:.2f} s (imports + model load + first photo); "
          f"warm median {1000 * statistics.median(lat):.1f} ms "
          f"(detection alone {1000 * statistics.median(det):.1f} ms)")

    faces = np.random.default_rng(0).integers(0, 256, (a.faces, 48, 48, 1)).astype(np.float32)
    for label, spec in (("keras", a.model), ("tflite", a.tflite)):
        if not Path(spec).exists():
            print(f"{label}: {spec} missing, skipped (fer export-tflite makes it)")
            continue
        pred = load_predictor(spec)
        pred(faces[:512])
        t = time.perf_counter()
        for i in range(0, len(faces), 512):
            pred(faces[i:i + 512])
        dt = time.perf_counter() - t
        print(f"{label}: batched inference {len(faces) / dt:,.0f} faces/s (batches of 512, {len(faces)} faces)")


if __name__ == "__main__":
    main()
