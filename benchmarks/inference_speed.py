"""Inference speed: batched faces/s (Keras and TFLite), and one photo end to end, stage by stage.

    python benchmarks/inference_speed.py [--model models/model.keras] [--tflite models/model.tflite]
                                         [--detectors haar yunet mtcnn]

Cold start = loading the model and the first photo (Haar). Then, for each detector, the median over
``--repeat`` warm runs of each stage of the photo path that ``fer predict`` and the service take:
decode (JPEG bytes to gray pixels), detect, align/crop (to 48x48), classify; and the total as a
ratio to Haar's, same run.
"""

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from records import add_argument, record, table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/model.keras")
    ap.add_argument("--tflite", default="models/model.tflite")
    ap.add_argument("--faces", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--detectors", nargs="+", default=["haar", "yunet", "mtcnn"],
                    help="the photo path with each (the first is the ratios' base)")
    add_argument(ap)
    a = ap.parse_args()

    t0 = time.perf_counter()
    import cv2
    from skimage import data

    from fer_pipeline.faces import make_detector
    from fer_pipeline.predict import analyse, decode_image
    from fer_pipeline.predictor import load_predictor

    rgb = data.astronaut()
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    predictor = load_predictor(a.model)
    analyse([("astronaut", decode_image(jpeg))], predictor, make_detector("haar"))
    cold = time.perf_counter() - t0
    print(f"cold start {cold:.2f} s (imports + model load + first photo, Haar)")
    rows, batched = [], []
    stages = ("decode", "detect", "crop", "classify")
    totals = {}
    print(f"one {rgb.shape[1]}x{rgb.shape[0]} JPEG photo, warm, median of {a.repeat} (ms):")
    base = a.detectors[0]
    print(f"{'detector':>9} " + " ".join(f"{s_:>9}" for s_ in stages) + f" {'total':>9} {'x ' + base:>9}")
    for name in a.detectors:
        detector = make_detector(name)
        analyse([("astronaut", decode_image(jpeg))], predictor, detector)  # warm-up
        per = {s_: [] for s_ in (*stages, "total")}
        for _ in range(a.repeat):
            seconds = {}
            t = time.perf_counter()
            gray = decode_image(jpeg)
            seconds["decode"] = time.perf_counter() - t
            res = analyse([("astronaut", gray)], predictor, detector, seconds=seconds)
            per["total"].append(time.perf_counter() - t)
            for s_ in stages:
                per[s_].append(seconds[s_])
        med = {k: 1000 * statistics.median(v) for k, v in per.items()}
        totals[name] = med["total"]
        print(f"{name:>9} " + " ".join(f"{med[s_]:9.1f}" for s_ in stages)
              + f" {med['total']:9.1f} {med['total'] / totals[base]:9.2f}  ({len(res[0].faces)} face)")
        rows.append([name, *(round(med[s_], 1) for s_ in stages), round(med["total"], 1),
                     round(med["total"] / totals[base], 2), len(res[0].faces)])

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
        batched.append([label, spec, round(len(faces) / dt)])
    record(a, "inference_speed", [
        table(f"One {rgb.shape[1]}x{rgb.shape[0]} JPEG photo, warm, median of {a.repeat} runs (ms)",
              ["detector", *stages, "total", f"x {base}", "faces"], rows),
        table("Batched inference (batches of 512)", ["runtime", "model", "faces/s"], batched),
    ], [f"cold start (imports, model load, first photo with Haar): {cold:.2f} s"])


if __name__ == "__main__":
    main()
