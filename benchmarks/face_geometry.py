"""Where a face detector puts the eyes, nose and mouth on FER2013's own training faces: the
template that its aligned photo crops are mapped onto (``fer_pipeline.faces.TEMPLATES``).

    python benchmarks/face_geometry.py [--detector yunet|mtcnn] [--faces 3000] [--upscale 4]

Each face is upscaled (bicubic) and given to the detector exactly as a photo that a face fills
would be; the five landmarks of its most confident face, mapped back to 48x48 coordinates, are
collected, and the median of each is printed, with the spread (interquartile range) and how many
faces were found, then the template: those medians mirror-averaged (training flips faces, so the
model sees both sides alike: eyes level, symmetric about x = 24).
"""

import argparse
import time

import numpy as np
from records import add_argument, record, table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/processed/train.npz")
    ap.add_argument("--faces", type=int, default=3000)
    ap.add_argument("--upscale", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--detector", default="yunet", choices=["yunet", "mtcnn"])
    add_argument(ap)
    a = ap.parse_args()

    import cv2

    from fer_pipeline.faces import LANDMARKS, make_detector

    x = np.load(a.data)["x"][..., 0]
    idx = np.random.default_rng(a.seed).choice(len(x), size=min(a.faces, len(x)), replace=False)
    det = make_detector(a.detector)
    points, t0 = [], time.perf_counter()
    for i in idx:
        big = cv2.resize(x[i], (48 * a.upscale, 48 * a.upscale), interpolation=cv2.INTER_CUBIC)
        faces = det.detect(big)
        if faces:
            f = max(faces, key=lambda f: f.score)
            points.append([[v / a.upscale for v in f.landmarks[k]] for k in LANDMARKS])
    pts = np.array(points)
    print(f"faces found: {len(pts)} of {len(idx)} ({len(pts) / len(idx):.1%}); "
          f"{(time.perf_counter() - t0) / len(idx) * 1000:.0f} ms per face")
    med = np.median(pts, axis=0)
    q1, q3 = np.percentile(pts, 25, axis=0), np.percentile(pts, 75, axis=0)
    for k, m, lo, hi in zip(LANDMARKS, med, q1, q3):
        print(f"median {k}: ({m[0]:.1f}, {m[1]:.1f})   IQR x {lo[0]:.1f}-{hi[0]:.1f}, y {lo[1]:.1f}-{hi[1]:.1f}")
    m = dict(zip(LANDMARKS, med))
    pairs = (("left_eye", "right_eye"), ("mouth_left", "mouth_right"))
    print(f"TEMPLATE ({a.detector}, mirror-averaged) = {{")
    for left, right in pairs:   # each pair level, symmetric about x = 24
        half = (m[right][0] - m[left][0]) / 2
        y = (m[left][1] + m[right][1]) / 2
        print(f'    "{left}": ({24 - half:.2f}, {y:.2f}),\n    "{right}": ({24 + half:.2f}, {y:.2f}),')
    print(f'    "nose": (24.0, {m["nose"][1]:.2f}),')
    print("}")
    rows = [[k, round(float(v[0]), 2), round(float(v[1]), 2), f"{lo[0]:.1f}-{hi[0]:.1f}", f"{lo[1]:.1f}-{hi[1]:.1f}"]
            for k, v, lo, hi in zip(LANDMARKS, med, q1, q3)]
    record(a, "face_geometry", [table(f"{a.detector}'s landmarks on Training faces upscaled {a.upscale}x, "
                                      "48x48 coordinates", ["landmark", "median x", "median y", "IQR x", "IQR y"],
                                      rows)],
           [f"faces found: {len(pts)} of {len(idx)} ({len(pts) / len(idx):.1%})"])


if __name__ == "__main__":
    main()
