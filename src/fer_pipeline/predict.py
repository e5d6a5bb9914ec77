"""Emotions on real photos: decode, detect faces, crop them like FER2013 (48x48 gray), classify in
batches. The same path serves ``fer predict`` (``predict_cli``), ``fer serve``, ``fer evaluate-photos``
and videos (``video``).

Detectors and crops: ``fer_pipeline.faces``. Models: ``fer_pipeline.predictor`` (Keras, LiteRT, MLflow).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FerError
from .faces import DETECTOR_NAMES, FaceDetector, face_crop
from .labels import LABELS
from .predictor import Predictor

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}


def read_image(path: str | os.PathLike) -> np.ndarray | None:
    """Grayscale uint8 image, or None if the file is not a readable image."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    return decode_image(data.tobytes())


DEFAULT_MAX_PIXELS = 89_478_485  # PIL's default decompression-bomb threshold


class ImageTooLarge(FerError):
    """The image has more pixels than allowed (found from its header, before decoding)."""


def decode_image(data: bytes, max_pixels: int | None = None) -> np.ndarray | None:
    """Grayscale uint8 pixels of an encoded image, turned upright by its EXIF orientation (phone
    photos), or None if ``data`` is not a readable image. With ``max_pixels``, the size is read
    from the header first and a larger image raises ``ImageTooLarge`` without being decoded."""
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        return None
    # This check replaces PIL's decompression-bomb check (which would refuse at open, before we
    # can say the size): the limit is ours, PIL's own default unless one is given.
    Image.MAX_IMAGE_PIXELS = None
    limit = max_pixels if max_pixels is not None else DEFAULT_MAX_PIXELS
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
        w, h = img.size
        if w * h > limit:
            raise ImageTooLarge(f"image is {w}x{h} = {w * h / 1e6:.1f} megapixels; the limit is "
                                f"{limit / 1e6:.1f} megapixels")
        gray = to_gray8(ImageOps.exif_transpose(img))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    return gray if gray.size else None


def to_gray8(img) -> np.ndarray:
    """8-bit grayscale pixels of a PIL image of any mode. 16-bit and 32-bit integer images are
    scaled from their range to 0-255 (PIL's ``convert("L")`` clips them, so a 16-bit face comes back
    nearly white); float images scaled from 0-1 when they lie within it, else clipped; transparent
    pixels laid over white, as a viewer shows them."""
    from PIL import Image

    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        return np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
    if img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        a = a * 255.0 if a.size and np.nanmin(a) >= 0 and np.nanmax(a) <= 1 else a
        return np.clip(np.rint(np.nan_to_num(a)), 0, 255).astype(np.uint8)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.asarray(img.convert("L"), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# Photos -> faces -> emotions


@dataclass
class PhotoResult:
    file: str
    width: int
    height: int
    faces: list[dict]
    faces_dropped: int = 0  # faces beyond ``max_faces`` (the smallest), not classified

    def to_dict(self) -> dict:
        d = {"file": self.file, "width": self.width, "height": self.height, "faces": self.faces}
        return {**d, "faces_dropped": self.faces_dropped} if self.faces_dropped else d


def analyse(images: list[tuple[str, np.ndarray]], predictor: Predictor, detector: FaceDetector,
            margin: float = 0.1, max_faces: int | None = None, min_confidence: float | None = None,
            seconds: dict[str, float] | None = None, crop_stats: bool = False) -> list[PhotoResult]:
    """Detect faces in every image (at most ``max_faces`` per image, the largest), crop each as
    the model expects (aligned when the detector gives landmarks), classify all faces in one
    batch. A face whose top probability is under ``min_confidence`` is marked ``uncertain``.
    ``seconds``, if given, accumulates the time spent per stage (detect, crop, classify);
    ``crop_stats`` adds each crop's ``brightness`` and ``contrast`` (what the face record keeps)."""
    import time

    seconds = seconds if seconds is not None else {}
    crops, owners, results = [], [], []
    for name, gray in images:
        t0 = time.perf_counter()
        faces = detector.detect(gray)
        t1 = time.perf_counter()
        dropped = 0
        if max_faces is not None and len(faces) > max_faces:
            keep = sorted(faces, key=lambda f: -f.box[2] * f.box[3])[:max_faces]
            dropped = len(faces) - max_faces
            faces = sorted(keep, key=lambda f: (f.box[1], f.box[0]))
        res = PhotoResult(name, int(gray.shape[1]), int(gray.shape[0]), [], dropped)
        for face in faces:
            crops.append(face_crop(gray, face, margin))
            owners.append((res, face))
        results.append(res)
        seconds["detect"] = seconds.get("detect", 0.0) + t1 - t0
        seconds["crop"] = seconds.get("crop", 0.0) + time.perf_counter() - t1
    t0 = time.perf_counter()
    probs = predictor(np.stack(crops)[..., None] if crops else np.zeros((0, 48, 48, 1)))
    seconds["classify"] = seconds.get("classify", 0.0) + time.perf_counter() - t0
    if crop_stats:
        from .monitoring import crop_stats as stats

        brightness, contrast = stats(np.stack(crops)) if crops else ([], [])
    for i, ((res, face), p) in enumerate(zip(owners, probs)):
        k = int(np.argmax(p))
        out = {"box": [int(v) for v in face.box], "label": LABELS[k], "score": round(float(p[k]), 4),
               "probabilities": {n: round(float(v), 4) for n, v in zip(LABELS, p)}}
        if face.landmarks:
            out["aligned"] = True
        if face.whole_image:
            out["whole_image"] = True
        if min_confidence is not None:
            out["uncertain"] = bool(p[k] < min_confidence)
        if crop_stats:
            out["brightness"], out["contrast"] = round(float(brightness[i]), 2), round(float(contrast[i]), 2)
        res.faces.append(out)
    return results


def annotate(path: str, result: PhotoResult, out_dir: str | os.PathLike) -> Path:
    """A copy of the photo (colour kept) with each face's box, label and probability."""
    import cv2

    img = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    for face in result.faces:
        x, y, w, h = face["box"]
        thick = max(2, img.shape[1] // 400)
        cv2.rectangle(img, (x, y), (x + w, y + h), (0, 200, 0), thick)
        text = f"{face['label']} {face['score']:.2f}"
        scale = max(0.5, w / 200)
        cv2.putText(img, text, (x, max(15, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 200, 0), thick)
    out = Path(out_dir) / Path(path).name
    out.parent.mkdir(parents=True, exist_ok=True)
    from .fsutil import atomic_path

    with atomic_path(out) as tmp:
        ok, buf = cv2.imencode(out.suffix if out.suffix.lower() in IMAGE_SUFFIXES else ".png", img)
        tmp.write_bytes(buf.tobytes())
    return out


def add_photo_arguments(p) -> None:
    """--detector, --margin, --min-confidence (defaults: params.yaml's predict section)."""
    p.add_argument("--detector", choices=DETECTOR_NAMES,
                   help="face detector (default: predict.detector); whole: each image is one face crop, "
                        "yunet+whole / mtcnn+whole / haar+whole: the whole image where the detector finds none")
    p.add_argument("--margin", type=float, help="haar: border around each face box, fraction (predict.margin)")
    p.add_argument("--min-confidence", type=float,
                   help="mark faces whose top probability is lower as uncertain (predict.min_confidence)")
