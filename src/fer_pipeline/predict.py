"""Emotions on real photos: decode, detect faces, crop them like FER2013 (48x48 gray), classify in
batches; the ``fer predict`` command.

Face detection sits behind the small ``FaceDetector`` protocol; OpenCV's bundled Haar frontal-face
cascade is the default. Models are loaded by ``fer_pipeline.predictor`` (Keras, LiteRT, MLflow).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import FerError
from .labels import LABELS
from .predictor import Predictor, load_predictor

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
DETECT_MAX_SIDE = 1024  # large photos are searched at this size; boxes are mapped back


class FaceDetector(Protocol):
    def detect(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Face boxes (x, y, w, h) in pixel coordinates of ``gray``."""


class HaarFaceDetector:
    """OpenCV's Haar frontal-face cascade (shipped in opencv-python 4.x under cv2.data)."""

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 24):
        import cv2

        path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise FerError(f"Haar cascade not found at {path}: install opencv-python-headless<5")
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size

    def detect(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        import cv2

        h, w = gray.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) \
            if scale < 1 else gray
        boxes = self.cascade.detectMultiScale(small, scaleFactor=self.scale_factor,
                                              minNeighbors=self.min_neighbors,
                                              minSize=(self.min_size, self.min_size))
        return sorted((tuple(int(round(v / scale)) for v in b) for b in boxes), key=lambda b: (b[1], b[0]))


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
        gray = np.asarray(ImageOps.exif_transpose(img).convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    return gray if gray.size else None


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.1) -> np.ndarray:
    """The face box grown by ``margin`` on each side (clipped), resized to 48x48 like FER2013."""
    import cv2

    x, y, w, h = box
    dx, dy = int(w * margin), int(h * margin)
    H, W = gray.shape[:2]
    x0, y0, x1, y1 = max(0, x - dx), max(0, y - dy), min(W, x + w + dx), min(H, y + h + dy)
    face = gray[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if face.shape[0] > 48 else cv2.INTER_LINEAR
    return cv2.resize(face, (48, 48), interpolation=interp)


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

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def analyse(images: list[tuple[str, np.ndarray]], predictor: Predictor, detector: FaceDetector,
            margin: float = 0.1, max_faces: int | None = None) -> list[PhotoResult]:
    """Detect faces in every image (at most ``max_faces`` per image, the largest), classify all
    faces in one batch."""
    crops, owners, results = [], [], []
    for name, gray in images:
        boxes = detector.detect(gray)
        dropped = 0
        if max_faces is not None and len(boxes) > max_faces:
            keep = sorted(boxes, key=lambda b: -b[2] * b[3])[:max_faces]
            dropped = len(boxes) - max_faces
            boxes = sorted(keep, key=lambda b: (b[1], b[0]))
        res = PhotoResult(name, int(gray.shape[1]), int(gray.shape[0]), [], dropped)
        for box in boxes:
            crops.append(crop_face(gray, box, margin))
            owners.append((res, box))
        results.append(res)
    probs = predictor(np.stack(crops)[..., None] if crops else np.zeros((0, 48, 48, 1)))
    for (res, box), p in zip(owners, probs):
        k = int(np.argmax(p))
        res.faces.append({"box": [int(v) for v in box], "label": LABELS[k], "score": round(float(p[k]), 4),
                          "probabilities": {n: round(float(v), 4) for n, v in zip(LABELS, p)}})
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


def collect_files(inputs: Iterable[str]) -> tuple[list[str], bool]:
    """Files named directly (any) plus image files found in folders; whether a folder was given."""
    files, had_folder = [], False
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            had_folder = True
            files += sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(str(p))
    return files, had_folder


def run_predict(inputs: list[str], model: str | None, output: str | None, annotate_dir: str | None,
                batch_images: int = 32, margin: float = 0.1) -> int:
    """The ``fer predict`` command; returns the exit status (1 only if nothing could be read)."""
    from tqdm import tqdm

    files, had_folder = collect_files(inputs)
    if not files:
        raise FerError("no input images found")
    predictor = load_predictor(model)
    detector = HaarFaceDetector()
    read_ok = 0
    with (open(output, "w") if output else contextlib.nullcontext(sys.stdout)) as out:
        bar = tqdm(total=len(files), desc="photos", unit="img", disable=not had_folder, file=sys.stderr)
        for i in range(0, len(files), batch_images):
            chunk = []
            for f in files[i:i + batch_images]:
                gray = read_image(f)
                if gray is None:
                    print(f"skipped {f}: not a readable image", file=sys.stderr)
                else:
                    chunk.append((f, gray))
            read_ok += len(chunk)
            for res in analyse(chunk, predictor, detector, margin):
                if not res.faces:
                    print(f"no face found in {res.file}", file=sys.stderr)
                out.write(res.to_json() + "\n")
                if annotate_dir:
                    annotate(res.file, res, annotate_dir)
            bar.update(len(files[i:i + batch_images]))
        bar.close()
    if not read_ok:
        print("error: none of the inputs could be read as an image", file=sys.stderr)
        return 1
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="emotions of the faces in photos (JSON lines)")
    p.add_argument("inputs", nargs="+", help="image files and/or folders")
    p.add_argument("--model", help="a .keras/.tflite file or an MLflow URI such as models:/fer-emotion@champion "
                                   "(default: the registry champion, else models/model.keras)")
    p.add_argument("--output", "-o", help="write JSON lines here instead of stdout")
    p.add_argument("--annotate", metavar="DIR", help="also write annotated copies of the photos into DIR")
    p.add_argument("--margin", type=float, default=0.1, help="extra border around each face box (fraction)")

    def func(args):
        code = run_predict(args.inputs, args.model, args.output, args.annotate, margin=args.margin)
        if code:
            sys.exit(code)

    p.set_defaults(func=func)
