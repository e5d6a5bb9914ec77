"""The FER2013 round trip: PrivateTest faces placed into larger synthetic photos, read back through
the whole photo path (``predict.analyse``: detect, crop, classify), against the same model on the
same faces given directly. What the photo path loses is the gap.

    python benchmarks/photo_roundtrip.py [--model models/model.keras ...] [--faces 900] [--detectors haar mtcnn]

Several ``--model`` files are read from the same photos and the same detections (each photo is
searched once per detector; the time per photo is the first model's, detection included).

``mtcnn@0.7`` names MTCNN with its confidence threshold at 0.7 instead of the default 0.9;
``mtcnn/0.6,0.7`` names MTCNN with those PNet and RNet proposal thresholds (the package's own
defaults) instead of ``faces.MTCNN_STAGE_THRESHOLDS``;
``mtcnn-upright`` names MTCNN that never searches a photo again (no turns, no views);
``mtcnn-always`` and ``mtcnn-unless_one`` name MTCNN with that ``faces.TURNED_SEARCH``;
``mtcnn:mirrored`` names MTCNN searching again only that view of ``faces.RETRY_VIEWS``
(``mtcnn:`` none: the turns alone); ``mtcnn~edge`` names MTCNN padding the photo with that
``faces.PAD_FILLS`` (repeated edge pixels, as before the flat grey). They combine in this order:
``mtcnn-upright~edge/0.6,0.7:mirrored@0.7``. ``whole`` and ``mtcnn+whole`` are ``fer predict``'s detectors
for face crops (the whole image as the face; ``--layouts fills`` draws face crops only).

``--views 2`` also reads every model with test-time views of each crop (the mean over it and its
mirror at its place and shifted 2 px each way: the evaluate stage's TTA), on the same detections.

``yunet-turned`` names YuNet with turned views of each face (``faces.YUNET_TURNS``), ``yunet@0.5`` YuNet
at that score threshold instead of params.yaml's ``predict.detector_threshold``.

Each face goes into one of five layouts, in turn:
- ``scene``: upscaled 3-8x, rotated up to +-20 degrees, on a background (texture, gradient or
  noise), shifted; the face keeps FER2013's margin around it;
- ``fills``: the photo is the face alone, upscaled 3-8x and rotated, cut to its central 80%
  (no margin: the face fills the frame, as in a selfie or a face crop);
- ``group``: three faces, each upscaled and rotated, side by side on one background;
- ``small``: one face of 29-72 px (0.6-1.5x) in a photo 5-8 times its size: the resolution a face
  far from the camera has;
- ``turned``: as ``scene``, the face turned 25-45 degrees either way in the image plane.
A face counts as found when a detected face's centre lies within 40% of its size from the true
centre; a detected face near no placed face counts as a false face. Accuracy end to end counts a
missed face wrong. Labels: FER2013's, and (a column of its own) the FER+ most-voted label where
one exists. Time per photo is given as a ratio to Haar's in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from records import add_argument, record, table


def backgrounds(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    import cv2
    from skimage import data

    kind = rng.integers(4)
    if kind == 0:
        tex = [data.brick, data.grass, data.gravel][rng.integers(3)]()
        return cv2.resize(tex, (w, h), interpolation=cv2.INTER_LINEAR)
    if kind == 1:
        yy, xx = np.mgrid[0:h, 0:w]
        a, b = rng.uniform(-1, 1, 2)
        g = a * xx / w + b * yy / h
        return np.clip(127 + 100 * (g - g.mean()), 0, 255).astype(np.uint8)
    if kind == 2:
        noise = rng.normal(128, 50, (h // 8 + 1, w // 8 + 1))
        return np.clip(cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)
    return np.full((h, w), int(rng.integers(30, 225)), np.uint8)


def place(photo: np.ndarray, face: np.ndarray, cx: float, cy: float, scale: float, angle: float) -> float:
    """Paste ``face`` (48x48) scaled and rotated about its centre onto ``photo`` at (cx, cy); the
    face's side in the photo."""
    import cv2

    m = cv2.getRotationMatrix2D((23.5, 23.5), angle, scale)
    m[:, 2] += (cx - 23.5, cy - 23.5)
    h, w = photo.shape
    warped = cv2.warpAffine(face, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(np.ones((48, 48), np.float32), m, (w, h), flags=cv2.INTER_LINEAR)
    photo[:] = (mask * warped + (1 - mask) * photo).astype(np.uint8)
    return 48 * scale


def make_photo(rng, faces: list[np.ndarray], layout: str) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """A photo and the true (cx, cy, side) of each face in it."""
    import cv2

    if layout == "fills":
        s, a = rng.uniform(3, 8), rng.uniform(-20, 20)
        side = int(48 * s)
        m = cv2.getRotationMatrix2D((23.5, 23.5), a, s)
        m[:, 2] += (side / 2 - 23.5, side / 2 - 23.5)
        big = cv2.warpAffine(faces[0], m, (side, side), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        cut = int(0.1 * side)
        photo = big[cut:side - cut, cut:side - cut].copy()
        return photo, [(photo.shape[1] / 2, photo.shape[0] / 2, 0.8 * side)]
    scales = {"group": (3, 5), "small": (0.6, 1.5)}.get(layout, (3, 8))
    scales = rng.uniform(*scales, len(faces))
    sides = 48 * scales
    room = (5, 8) if layout == "small" else (2.0, 3.0)
    w = int(sides.sum() * 1.6 + 80) if layout == "group" else int(sides[0] * rng.uniform(*room))
    h = int(sides.max() * (rng.uniform(4, 6) if layout == "small" else rng.uniform(1.8, 2.4)))
    photo = backgrounds(rng, h, w)
    truth, x = [], 0.3 * sides[0] + 20
    for face, s, side in zip(faces, scales, sides):
        if layout == "group":
            cx, x = x + side / 2, x + side * 1.6
        else:
            cx = rng.uniform(0.75 * side, w - 0.75 * side)
        cy = rng.uniform(0.75 * side, h - 0.75 * side)
        angle = rng.uniform(25, 45) * rng.choice([-1, 1]) if layout == "turned" else rng.uniform(-20, 20)
        place(photo, face, cx, cy, s, angle)
        truth.append((cx, cy, side))
    return photo, truth


LAYOUTS = ("scene", "fills", "group", "small", "turned")


def make_photos(rng, faces: np.ndarray, layouts: tuple[str, ...] = LAYOUTS
                ) -> list[tuple[np.ndarray, list[tuple[float, float, float]], list[int], str]]:
    """Every face of ``faces`` placed in a photo, the layouts in turn: (photo, truth, the indices of
    its faces in ``faces``, layout)."""
    photos, k = [], 0
    while k < len(faces):
        layout = layouts[len(photos) % len(layouts)]
        n = 3 if layout == "group" else 1
        members = list(range(k, min(k + n, len(faces))))
        photo, truth = make_photo(rng, [faces[i] for i in members], layout)   # a last group may be smaller
        photos.append((photo, truth, members, layout))
        k += len(members)
    return photos


def near_placed(centres: list[tuple[float, float]], truth: list[tuple[float, float, float]]) -> np.ndarray:
    """[j, t]: whether detected face j's centre lies within 40% of placed face t's side from its centre."""
    return np.array([[np.hypot(x - cx, y - cy) < 0.4 * side for cx, cy, side in truth]
                     for x, y in centres], dtype=bool).reshape(-1, len(truth))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", nargs="+", default=["models/model.keras"])
    ap.add_argument("--data", default="data/processed/test.npz")
    ap.add_argument("--faces", type=int, default=900)
    ap.add_argument("--detectors", nargs="+", default=["haar", "mtcnn"])
    ap.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS),
                    help="only these layouts (fills: face crops; the default draw takes all five in turn)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--views", type=int, metavar="SHIFT_PX",
                    help="also read every model with test-time views of each 48x48 crop: the mean over it and its "
                         "mirror, at its place and shifted SHIFT_PX each way (the evaluate stage's TTA)")
    ap.add_argument("--json", help="also write the figures here")
    add_argument(ap)
    a = ap.parse_args()

    from fer_pipeline.predict import analyse
    from fer_pipeline.predictor import load_predictor
    from fer_pipeline.targets import most_voted

    z = np.load(a.data)
    x, y = z["x"][..., 0], z["y"]
    fp = most_voted(z["votes"]) if "votes" in z.files else np.full(len(y), -1)
    rng = np.random.default_rng(a.seed)
    idx = rng.choice(len(x), size=min(a.faces, len(x)), replace=False)
    photos = make_photos(rng, x[idx], tuple(a.layouts))   # the same for every detector and model
    y, fp = y[idx], fp[idx]             # the drawn faces' labels (fp: -1 where no FER+ label)
    has_fp = fp >= 0
    layout_of = {i: layout for _, _, members, layout in photos for i in members}
    results = {"faces": len(idx), "photos": len(photos), "models": [],
               "layout_of_face": [layout_of[i] for i in range(len(idx))]}
    detections: dict[str, Remembered] = {}
    runs = [(model, None) for model in a.model] + ([(model, a.views) for model in a.model] if a.views else [])
    for k, (model, views) in enumerate(runs):
        predictor = load_predictor(model)
        if views:
            predictor, model = with_views(predictor, views), f"{model} +views"
        direct = predictor(x[idx][..., None]).argmax(1)
        m = {"model": model, "direct_accuracy": round(float((direct == y).mean()), 4),
             "direct_accuracy_ferplus": round(float((direct[has_fp] == fp[has_fp]).mean()), 4)
             if has_fp.any() else None, "detectors": {}}
        results["models"].append(m)
        for name in a.detectors:
            if name not in detections:
                detector = detector_named(name)
                analyse([("warm-up", photos[0][0])], predictor, detector)  # load and trace once, untimed
                detections[name] = Remembered(detector)
            m["detectors"][name] = read_back(photos, y, fp, direct, predictor, detections[name], first=k == 0)
    ts = [t for m in results["models"] for t in tables(m, results)]
    compared = model_comparison(results)
    ts += [compared] if compared else []
    print_tables(ts)
    record(a, "photo_roundtrip", ts)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(results, fh, indent=2)


def with_views(predictor, shift_px: int):
    """``predictor`` answering with the mean over test-time views of each face: the crop and its
    mirror, at its place and at ``metrics.tta_offsets(shift_px)`` (the evaluate stage's TTA)."""
    from fer_pipeline.metrics import shifted, tta_offsets
    from fer_pipeline.predictor import Predictor

    def run(faces: np.ndarray) -> np.ndarray:
        views = [faces, faces[:, :, ::-1, :]]
        for dx, dy in tta_offsets(shift_px):
            moved = shifted(faces, dx, dy)
            views += [moved, moved[:, :, ::-1, :]]
        return np.mean([predictor(v) for v in views], axis=0)

    return Predictor(f"{predictor.spec} +views", "views", run)


class Remembered:
    """A detector that searches each photo once; the next model gets the same faces."""

    def __init__(self, detector):
        self.detector, self.faces = detector, {}

    def detect(self, gray: np.ndarray) -> list:
        if id(gray) not in self.faces:
            self.faces[id(gray)] = self.detector.detect(gray)
        return self.faces[id(gray)]


def detector_named(name: str):
    """``mtcnn-upright``, ``mtcnn/0.6,0.7``, ``mtcnn:mirrored``, ``mtcnn~edge``, ``mtcnn@0.7`` (the module
    docstring)."""
    from fer_pipeline.faces import YUNET_TURNS, YuNetFaceDetector, make_detector
    from fer_pipeline.settings import photo_settings

    if name.startswith("yunet"):
        kind, _, threshold = name.partition("@")
        s = photo_settings()
        cls = type("YuNetTurned", (YuNetFaceDetector,), {"turns": YUNET_TURNS}) if kind == "yunet-turned" \
            else YuNetFaceDetector
        return cls(float(threshold or s["detector_threshold"]), s["detector_min_side"])
    kind, _, threshold = name.partition("@")
    kind, colon, views = kind.partition(":")
    kind, _, stages = kind.partition("/")
    kind, tilde, fill = kind.partition("~")
    base, _, variant = kind.partition("-")
    if base != "mtcnn" or not (variant or colon or stages or tilde or threshold):
        return make_detector(name)
    return mtcnn_variant(name, variant, views.split(",") if colon else None,
                         stages.split(",") if stages else None, fill if tilde else None, threshold)


def mtcnn_variant(name: str, variant: str, views, stages, fill, threshold):
    """A subclass of ``faces.MtcnnFaceDetector`` with the settings ``name`` changes (production
    MTCNN takes none): ``-upright`` without the turns and views (``RETRY_ANGLES``, ``RETRY_VIEWS``),
    ``-always`` etc. that ``TURNED_SEARCH``, ``:mirrored`` these ``VIEWS`` only, ``/0.6,0.7`` other
    PNet, RNet proposal thresholds, ``~edge`` another ``PAD_FILLS``, ``@0.7`` another confidence."""
    from fer_pipeline.faces import PAD_FILLS, TURNED_SEARCH, VIEWS, MtcnnFaceDetector

    def allowed(what: str, value: str, choices) -> str:
        if value not in choices:
            sys.exit(f"error: {name}: unknown {what} {value!r}; allowed: {', '.join(choices)}")
        return value

    settings: dict = {"retry_angles": (), "retry_views": ()} if variant == "upright" \
        else {"turned_search": allowed("turned search", variant, TURNED_SEARCH)} if variant else {}
    if views is not None:
        settings["retry_views"] = tuple(allowed("view", v, VIEWS) for v in views if v)
    if stages:
        settings["stage_thresholds"] = tuple(float(v) for v in stages)
    if fill is not None:
        settings["pad_fill"] = allowed("pad fill", fill, PAD_FILLS)
    if threshold:
        settings["min_confidence"] = float(threshold)
    return type("MtcnnVariant", (MtcnnFaceDetector,), settings)()


def read_back(photos, y, fp, direct, predictor, detector: Remembered, first: bool) -> dict:
    """Every photo through the photo path; the figures of one detector for one model. ``y``, ``fp``
    and ``direct``: per drawn face, FER2013's label, the FER+ label (-1: none), the model alone."""
    from tqdm import tqdm

    from fer_pipeline.labels import LABELS
    from fer_pipeline.metrics import wilson_interval
    from fer_pipeline.predict import analyse
    from fer_pipeline.promotion import mcnemar_exact_p

    pred = np.full(len(y), -1)
    by_layout: dict[str, list[int]] = {}
    false_faces = 0   # detected faces near no placed face
    t0 = time.perf_counter()
    for photo, truth, members, layout in tqdm(photos, desc=type(detector.detector).__name__, unit="photo",
                                              mininterval=2, disable=not first):
        (res,) = analyse([("p", photo)], predictor, detector)
        is_near = near_placed([(f["box"][0] + f["box"][2] / 2, f["box"][1] + f["box"][3] / 2) for f in res.faces],
                              truth)
        false_faces += int((~is_near.any(axis=1)).sum())
        for t, i in enumerate(members):
            near = [f for f, hit in zip(res.faces, is_near[:, t]) if hit]
            if near:
                pred[i] = LABELS.index(near[0]["label"])
            by_layout.setdefault(layout, []).append(i)
    seconds = time.perf_counter() - t0
    found = pred >= 0
    right = pred == y
    lo, hi = wilson_interval(int(right.sum()), len(y))
    b = int((right & (direct != y)).sum())
    c = int((~right & (direct == y)).sum())
    has_fp = fp >= 0
    return {"found": round(float(found.mean()), 4), "false_faces": false_faces,
            "accuracy": round(float(right.mean()), 4),
            "accuracy_ci95": [round(lo, 4), round(hi, 4)],
            "accuracy_on_found": round(float(right[found].mean()), 4) if found.any() else None,
            "gap_points": round(100 * (float(right.mean()) - float((direct == y).mean())), 2),
            "p_vs_direct": mcnemar_exact_p(b, c),
            "accuracy_ferplus": round(float((pred[has_fp] == fp[has_fp]).mean()), 4)
            if has_fp.any() else None,
            "seconds_per_photo": round(seconds / len(photos), 4) if first else None,
            "right": right.astype(int).tolist(),   # per drawn face: read right end to end
            "by_layout": {lay: {"faces": len(m), "found": round(float(found[m].mean()), 4),
                                "accuracy": round(float(right[m].mean()), 4),
                                "gap_points": round(100 * float(right[m].mean() - (direct[m] == y[m]).mean()), 2)}
                          for lay, m in by_layout.items()}}


def tables(m: dict, results: dict) -> list[dict]:
    """One model's two tables: each detector overall, and each layout."""
    first = results["models"][0]["detectors"]
    base = first.get("haar", {}).get("seconds_per_photo")
    fp = 100 * (m["direct_accuracy_ferplus"] or 0)
    layouts = list(next(iter(m["detectors"].values()))["by_layout"]) if m["detectors"] else []
    rows = []
    for name, r in m["detectors"].items():
        t = first[name]["seconds_per_photo"]
        rows.append([name, f"{100 * r['found']:.1f}%", f"{100 * r['accuracy']:.1f}% ({100 * r['accuracy_ci95'][0]:.1f}-"
                     f"{100 * r['accuracy_ci95'][1]:.1f})", f"{100 * (r['accuracy_on_found'] or 0):.1f}%",
                     f"{r['gap_points']:+.1f} pt (p = {r['p_vs_direct']:.2g})",
                     f"{100 * (r['accuracy_ferplus'] or 0):.1f}%", r["false_faces"],
                     f"{1000 * t:.0f} ms" + (f" ({t / base:.2f}x)" if base else "")])
    overall = table(f"{results['faces']} PrivateTest faces in {results['photos']} photos; model {m['model']}; "
                    f"the model alone {100 * m['direct_accuracy']:.1f}% (FER+ labels {fp:.1f}%)",
                    ["detector", "faces found", "end to end (95% interval)", "on found faces",
                     "gap to the model alone (McNemar p)", "FER+ labels end to end", "false faces",
                     "time per photo (x Haar)"], rows)
    by_layout = table(f"By layout, model {m['model']}: faces found / end to end / gap to the model alone",
                      ["layout", "faces", *m["detectors"]],
                      [[lay, m["detectors"][next(iter(m["detectors"]))]["by_layout"][lay]["faces"],
                        *(f"{100 * c['found']:.1f}% / {100 * c['accuracy']:.1f}% / {c['gap_points']:+.1f} pt"
                          for c in (m["detectors"][d]["by_layout"][lay] for d in m["detectors"]))]
                       for lay in layouts])
    return [overall, by_layout]


def model_comparison(results: dict) -> dict | None:
    """Each later model against the first, end to end on the same photos and detections: the gain
    in points and McNemar's exact p, overall and per layout."""
    from fer_pipeline.promotion import mcnemar_exact_p

    models = results["models"]
    if len(models) < 2:
        return None
    layouts = np.array(results["layout_of_face"])
    rows = []
    for m in models[1:]:
        for name, r in m["detectors"].items():
            a, b = np.array(models[0]["detectors"][name]["right"], bool), np.array(r["right"], bool)
            cells = []
            for lay in [None, *dict.fromkeys(results["layout_of_face"])]:
                sel = np.ones(len(a), bool) if lay is None else layouts == lay
                gain = 100 * (b[sel].mean() - a[sel].mean())
                p = mcnemar_exact_p(int((b & ~a)[sel].sum()), int((a & ~b)[sel].sum()))
                cells.append(f"{gain:+.1f} pt (p = {p:.2g})")
            rows.append([m["model"], name, *cells])
    return table(f"Against {models[0]['model']}, end to end on the same photos (gain, McNemar p)",
                 ["model", "detector", "all faces", *dict.fromkeys(results["layout_of_face"])], rows)


def print_tables(ts: list[dict]) -> None:
    for t in ts:
        print(f"\n{t['title']}")
        print("| " + " | ".join(t["columns"]) + " |")
        print("|" + "---|" * len(t["columns"]))
        for row in t["rows"]:
            print("| " + " | ".join(str(v) for v in row) + " |")


if __name__ == "__main__":
    main()
