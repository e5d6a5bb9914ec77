"""Faces in photos: detectors, and the 48x48 crop the model reads.

Detectors sit behind one protocol (``detect(gray) -> list[Face]``):

- ``yunet`` (the default): OpenCV's ``FaceDetectorYN`` running YuNet, whose 232 KB ONNX file ships
  inside this package (``assets/yunet/``, Apache-2.0, its sha256 checked before loading). Five
  landmarks per face, so the crop is aligned as for ``mtcnn`` (with ``TEMPLATES["yunet"]``, measured
  with YuNet's own landmarks), in milliseconds. Its threshold and the side small images are
  upscaled to come from params.yaml's ``predict`` section.
- ``mtcnn``: the ``mtcnn`` package (MIT; its weights ship inside the wheel; runs on the TensorFlow
  we ship). It gives five landmarks per face, so the crop can be **aligned**: rotated so the eyes
  are level, then scaled and placed so that the eyes, nose and mouth sit where they sit in
  FER2013's training faces (``TEMPLATE``). A model trained on FER2013 learned FER2013's framing;
  a detector's box plus a margin frames faces differently, and the model reads them worse.
- ``haar``: OpenCV's frontal-face cascade (no landmarks): the box grown by a margin, resized.
- ``whole``: no detection, the whole image is the face (folders of face crops); ``yunet+whole``,
  ``mtcnn+whole`` and ``haar+whole`` take the whole image only where the detector finds no face.

MTCNN misses faces that touch the image border and faces smaller than its smallest window, so an
image is padded (``PAD_FILLS``) and small images are upscaled before it looks; boxes and landmarks
are mapped back to the photo's coordinates. It also misses faces turned far in the image plane, so
a photo is searched again turned by ``RETRY_ANGLES`` and mirrored (``TURNED_SEARCH``,
``RETRY_VIEWS``). Each of these choices was made on the round trip
(``benchmarks/photo_roundtrip.py``); its figures are in ``benchmarks/README.md``, not here.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import FerError
from .params import DETECTOR_NAMES

DETECT_MAX_SIDE = 1024   # large photos are searched at this size; boxes are mapped back
SMALL_SIDE = 192         # smaller images are upscaled to this before a detector looks
RETRY_ANGLES = (20.0, -20.0)   # degrees (counter-clockwise) of the turned search (TURNED_SEARCH)
# When MTCNN searches a photo turned by RETRY_ANGLES: if_none (the upright pass found no face; the
# first turn that finds faces wins), unless_one (the default: also when it found several, each
# turn's new faces added), always (every photo, new faces added). Chosen by the round trip
# (`python benchmarks/photo_roundtrip.py --detectors mtcnn-if_none mtcnn-unless_one mtcnn-always`).
TURNED_SEARCH = ("if_none", "unless_one", "always")
# Other views of the photo searched again after the turns, under the same TURNED_SEARCH rule:
# "mirrored" (MTCNN is not mirror-symmetric, so the mirrored photo gets other proposals) and
# "equalized" (the histogram spread over 0-255: faint, low-contrast faces). The crop is still cut
# from the photo itself. Chosen by the round trip (`--detectors mtcnn:mirrored mtcnn:mirrored,equalized`).
VIEWS = ("mirrored", "equalized")
RETRY_VIEWS = ("mirrored",)
# MTCNN's first two stages propose candidates above these scores (the package's defaults: PNet 0.6,
# RNet 0.7); the last stage's score must still reach min_confidence (0.9), so lower proposal
# thresholds let faces reach the last stage that MTCNN never proposed, for some more false faces.
# Chosen by the round trip (`--detectors mtcnn/0.6,0.7 mtcnn mtcnn/0.3,0.4`).
MTCNN_STAGE_THRESHOLDS = (0.4, 0.5)   # PNet, RNet
# What fills the border MTCNN's image is padded with: "mean" (the default: a flat frame of the
# image's mean grey) or "edge" (its edge pixels repeated outwards). Repeated edges draw streaks from
# a face that touches the border, which hide faces that fill the frame. Chosen by the round trip
# (`--detectors mtcnn~edge mtcnn`).
PAD_FILLS = ("mean", "edge")
SIZE = 48
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # image left / right

# Where MTCNN puts the five landmarks on FER2013's own training faces, in 48x48 pixel coordinates,
# mirror-averaged (training flips faces, so the model sees both sides alike: eyes level, symmetric
# about x = 24): `python benchmarks/face_geometry.py --detector mtcnn --faces 1500`.
TEMPLATE: dict[str, tuple[float, float]] = {
    "left_eye": (15.2, 18.5),
    "right_eye": (32.8, 18.5),
    "nose": (24.0, 28.8),
    "mouth_left": (16.8, 37.35),
    "mouth_right": (31.2, 37.35),
}


# Where YuNet puts the five landmarks on the same Training faces (its mouth corners sit higher than
# MTCNN's), mirror-averaged like TEMPLATE: `python benchmarks/face_geometry.py --detector yunet --faces 1500`.
TEMPLATE_YUNET: dict[str, tuple[float, float]] = {
    "left_eye": (14.97, 18.25),
    "right_eye": (33.03, 18.25),
    "nose": (24.0, 28.4),
    "mouth_left": (16.81, 36.19),
    "mouth_right": (31.19, 36.19),
}
TEMPLATES = {"mtcnn": TEMPLATE, "yunet": TEMPLATE_YUNET}   # detector -> the template its landmarks map onto


@dataclass
class Face:
    box: tuple[int, int, int, int]                          # x, y, w, h in the photo
    landmarks: dict[str, tuple[float, float]] | None = None  # LANDMARKS, photo coordinates
    score: float | None = None                               # the detector's confidence
    whole_image: bool = False                                # no detection: the image is the face
    detector: str = "mtcnn"                                  # whose landmarks: the key of TEMPLATES


class FaceDetector(Protocol):
    name: str

    def detect(self, gray: np.ndarray) -> list[Face]:
        """Faces in ``gray`` (uint8, H x W), top to bottom, left to right."""


def _in_order(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: (f.box[1], f.box[0]))


def _inside_any(face: Face, others: list[Face]) -> bool:
    """Whether ``face``'s centre lies in another face's box, or another's centre in its box."""
    def centre_in(a: Face, b: Face) -> bool:
        x, y, w, h = b.box
        return x <= a.box[0] + a.box[2] / 2 <= x + w and y <= a.box[1] + a.box[3] / 2 <= y + h
    return any(centre_in(face, o) or centre_in(o, face) for o in others)


class HaarFaceDetector:
    """OpenCV's Haar frontal-face cascade (shipped in opencv-python 4.x under cv2.data)."""

    name = "haar"

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 24):
        import cv2

        path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise FerError(f"Haar cascade not found at {path}: install opencv-python-headless<5")
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size

    def detect(self, gray: np.ndarray) -> list[Face]:
        import cv2

        h, w = gray.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) \
            if scale < 1 else gray
        boxes = self.cascade.detectMultiScale(small, scaleFactor=self.scale_factor,
                                              minNeighbors=self.min_neighbors,
                                              minSize=(self.min_size, self.min_size))
        return _in_order([Face(tuple(int(round(v / scale)) for v in b), detector="haar") for b in boxes])


class MtcnnFaceDetector:
    """MTCNN (the ``mtcnn`` package) with five landmarks per face. Its settings are the class
    attributes below (production passes none; the round trip's variants are subclasses that change
    them, ``benchmarks/photo_roundtrip.py``): ``pad``, the border added on each side as a fraction of
    the longer side (a face that fills the frame then has room around it), filled as ``pad_fill``
    says (``PAD_FILLS``); images whose longer side is under ``min_side`` are upscaled to it first;
    ``stage_thresholds``, the scores MTCNN's first two stages (PNet, RNet) need to propose a
    candidate; ``turned_search``, ``retry_angles`` and ``retry_views``, the searches again."""

    name = "mtcnn"
    min_confidence = 0.9
    pad = 0.25
    min_side = SMALL_SIDE
    retry_angles: tuple[float, ...] = RETRY_ANGLES
    turned_search = "unless_one"
    stage_thresholds: tuple[float, float] = MTCNN_STAGE_THRESHOLDS
    retry_views: tuple[str, ...] = RETRY_VIEWS
    pad_fill = PAD_FILLS[0]

    def __init__(self):
        import logging

        logging.getLogger("mtcnn").setLevel(logging.ERROR)
        from mtcnn import MTCNN

        self.model = MTCNN(device="CPU:0")

    def detect(self, gray: np.ndarray) -> list[Face]:
        faces = self._detect_upright(gray)
        retries = [lambda a=a: self._detect_turned(gray, a) for a in self.retry_angles]
        retries += [lambda v=v: self._detect_view(gray, v) for v in self.retry_views]
        if self.turned_search == "always" or (self.turned_search == "unless_one" and len(faces) > 1):
            for retry in retries:   # every turn and view, keeping each face not found before
                faces += [f for f in retry() if not _inside_any(f, faces)]
            return _in_order(faces)
        for retry in () if faces else retries:
            faces = retry()
            if faces:
                break
        return faces

    def _detect_view(self, gray: np.ndarray, view: str) -> list[Face]:
        """Search a mirrored or equalized copy of ``gray``; boxes and landmarks in the photo's frame."""
        import cv2

        if view == "equalized":
            return self._detect_upright(cv2.equalizeHist(np.ascontiguousarray(gray)))
        w = gray.shape[1]
        swap = {"left_eye": "right_eye", "right_eye": "left_eye", "mouth_left": "mouth_right",
                "mouth_right": "mouth_left"}   # the image's left is the mirror's right
        return _in_order([Face((w - f.box[0] - f.box[2], f.box[1], f.box[2], f.box[3]),
                               {swap.get(k, k): (w - 1 - x, y) for k, (x, y) in f.landmarks.items()}, f.score)
                          for f in self._detect_upright(np.ascontiguousarray(gray[:, ::-1]))])

    def _detect_turned(self, gray: np.ndarray, angle: float) -> list[Face]:
        """Search ``gray`` turned by ``angle`` degrees on a canvas that holds all of it; each face's
        landmarks and box centre are mapped back (the box keeps its size, upright, within the photo)."""
        import cv2

        h, w = gray.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        c, s = abs(m[0, 0]), abs(m[0, 1])
        tw, th = int(math.ceil(w * c + h * s)), int(math.ceil(w * s + h * c))
        m[:, 2] += (tw / 2 - w / 2, th / 2 - h / 2)
        turned = cv2.warpAffine(gray, m, (tw, th), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        back = cv2.invertAffineTransform(m)

        def to_photo(x: float, y: float) -> tuple[float, float]:
            return (float(back[0, 0] * x + back[0, 1] * y + back[0, 2]),
                    float(back[1, 0] * x + back[1, 1] * y + back[1, 2]))

        faces = []
        for f in self._detect_upright(turned):
            x, y, bw, bh = f.box
            cx, cy = to_photo(x + bw / 2, y + bh / 2)
            marks = {k: to_photo(*v) for k, v in f.landmarks.items()}
            x0, y0 = max(0, int(round(cx - bw / 2))), max(0, int(round(cy - bh / 2)))
            x1, y1 = min(w, int(round(cx + bw / 2))), min(h, int(round(cy + bh / 2)))
            faces.append(Face((x0, y0, x1 - x0, y1 - y0), marks, f.score))
        return _in_order(faces)

    def _detect_upright(self, gray: np.ndarray) -> list[Face]:
        import cv2

        h, w = gray.shape[:2]
        side = max(h, w)
        scale = DETECT_MAX_SIDE / side if side > DETECT_MAX_SIDE else max(1.0, self.min_side / side)
        work = cv2.resize(gray, (round(w * scale), round(h * scale)),
                          interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR) if scale != 1 else gray
        p = int(round(self.pad * max(work.shape)))
        if self.pad_fill == "edge":
            work = cv2.copyMakeBorder(work, p, p, p, p, cv2.BORDER_REPLICATE)
        else:
            work = cv2.copyMakeBorder(work, p, p, p, p, cv2.BORDER_CONSTANT, value=int(round(float(work.mean()))))
        pnet, rnet = self.stage_thresholds
        found = self.model.detect_faces(np.repeat(work[..., None], 3, axis=-1),
                                        threshold_pnet=pnet, threshold_rnet=rnet)
        faces = []
        for d in found:
            if float(d["confidence"]) < self.min_confidence:
                continue
            x, y, bw, bh = (float(v) for v in d["box"])
            box = (int(round((x - p) / scale)), int(round((y - p) / scale)),
                   int(round(bw / scale)), int(round(bh / scale)))
            marks = {k: ((float(d["keypoints"][k][0]) - p) / scale, (float(d["keypoints"][k][1]) - p) / scale)
                     for k in LANDMARKS}
            faces.append(Face(box, marks, float(d["confidence"])))
        return _in_order(faces)


YUNET_FILE = Path(__file__).parent / "assets" / "yunet" / "face_detection_yunet_2023mar.onnx"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
# YuNet finds faces turned in the image plane but puts their eyes level as if they were upright.
# With turns, each face's surroundings are searched again turned by these degrees and the
# landmarks of the best-scoring view are kept, so the alignment levels the face. Off by default:
# on the round trip they did not pay (`python benchmarks/photo_roundtrip.py --detectors yunet
# yunet-turned`); the model, trained with rotations, reads the unlevelled crops as well.
YUNET_TURNS = (-30.0, -15.0, 15.0, 30.0)
TURN_FACE_SIDE = 96   # px: the face's side (its box's longer side) in the turned views


def checked_file(path: Path, sha256: str, what: str) -> Path:
    """``path`` if its bytes have the sha256 ``sha256``; else one line saying what is wrong."""
    if not path.is_file():
        raise FerError(f"{what} is missing: {path} (reinstall the package: pip install -e .)")
    if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
        raise FerError(f"{what} is damaged: {path} does not have the sha256 the package records "
                       "(reinstall the package: pip install -e .)")
    return path


class YuNetFaceDetector:
    """YuNet through OpenCV's ``FaceDetectorYN``: boxes, five landmarks and a score per face.
    ``threshold``: the score a face must reach. Images whose longer side is under ``SMALL_SIDE`` are
    upscaled to it, larger than ``DETECT_MAX_SIDE`` downscaled to it; where that finds no face, an
    image whose longer side is under ``min_side`` is searched again upscaled to it (faces of a few
    dozen pixels, which YuNet misses at their own size; a face that fills a small image is found
    by the first pass, and lost when upscaled). Boxes and landmarks come back in the photo's
    coordinates. ``turns`` (a class attribute, as production uses it: none, the upright pass alone;
    the round trip's ``yunet-turned`` is a subclass with ``YUNET_TURNS``): the turned views each
    face's landmarks are read again in."""

    name = "yunet"
    turns: tuple[float, ...] = ()

    def __init__(self, threshold: float, min_side: int, model_file: Path = YUNET_FILE):
        import cv2

        path = checked_file(Path(model_file), YUNET_SHA256, "the YuNet face detector file")
        self.threshold, self.min_side = float(threshold), int(min_side)
        try:
            self.net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), self.threshold, 0.3, 5000)
        except cv2.error as exc:
            raise FerError(f"OpenCV cannot load the YuNet face detector {path}: {str(exc).strip()[:120]}") from None

    def detect(self, gray: np.ndarray) -> list[Face]:
        faces = self._detect(gray) or (self._detect(gray, self.min_side) if max(gray.shape[:2]) < self.min_side else [])
        return [self._levelled(gray, f) for f in faces] if self.turns else faces

    def _levelled(self, gray: np.ndarray, face: Face) -> Face:
        """``face`` with the landmarks of the view of its surroundings (upright, or turned by each of
        ``turns``, all at a scale where the face is about ``TURN_FACE_SIDE`` px) where YuNet scores
        the face highest, mapped back to the photo; the upright view winning keeps ``face`` as it is."""
        import cv2

        x, y, bw, bh = face.box
        r = int(round(max(bw, bh)))
        cx, cy = int(round(x + bw / 2)), int(round(y + bh / 2))
        H, W = gray.shape[:2]
        region = cv2.copyMakeBorder(gray[max(0, cy - r):min(H, cy + r), max(0, cx - r):min(W, cx + r)],
                                    max(0, r - cy), max(0, cy + r - H), max(0, r - cx), max(0, cx + r - W),
                                    cv2.BORDER_REPLICATE)
        # searched at a scale where the face is about TURN_FACE_SIDE px: enough for YuNet, and cheap
        f = min(1.0, TURN_FACE_SIDE / max(r, 1))
        side = max(1, round(2 * r * f))
        small = cv2.resize(region, (side, side), interpolation=cv2.INTER_AREA) if f < 1 else region
        c = side / 2
        best, best_score = face, -1.0   # the upright view competes at the same scale; if it wins, the face stays
        for angle in (0.0, *self.turns):
            m = cv2.getRotationMatrix2D((c, c), angle, 1.0)
            near = [g for g in self._detect(cv2.warpAffine(small, m, (side, side), borderMode=cv2.BORDER_REPLICATE))
                    if abs(g.box[0] + g.box[2] / 2 - c) < c / 2 and abs(g.box[1] + g.box[3] / 2 - c) < c / 2]
            if not near or near[0].score <= best_score:
                continue
            best_score = near[0].score
            if angle == 0.0:
                best = face
            else:
                back = cv2.invertAffineTransform(m)
                marks = {k: ((back[0, 0] * u + back[0, 1] * v + back[0, 2]) / f + cx - r,
                             (back[1, 0] * u + back[1, 1] * v + back[1, 2]) / f + cy - r)
                         for k, (u, v) in near[0].landmarks.items()}
                best = Face(face.box, {k: (float(x), float(y)) for k, (x, y) in marks.items()}, face.score,
                            detector="yunet")
        return best

    def _detect(self, gray: np.ndarray, min_side: int = SMALL_SIDE) -> list[Face]:
        import cv2

        h, w = gray.shape[:2]
        side = max(h, w)
        scale = DETECT_MAX_SIDE / side if side > DETECT_MAX_SIDE else max(1.0, min_side / side)
        work = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                          interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR) if scale != 1 else gray
        bgr = cv2.cvtColor(np.ascontiguousarray(work), cv2.COLOR_GRAY2BGR)
        self.net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, rows = self.net.detect(bgr)
        faces = []
        for r in () if rows is None else rows:
            x, y, bw, bh = (float(v) / scale for v in r[:4])
            x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
            x1, y1 = min(w, int(round(x + bw))), min(h, int(round(y + bh)))
            if x1 <= x0 or y1 <= y0:
                continue
            # the rows give the eyes, nose and mouth corners left to right as the image shows them
            marks = {k: (float(r[4 + 2 * i]) / scale, float(r[5 + 2 * i]) / scale) for i, k in enumerate(LANDMARKS)}
            faces.append(Face((x0, y0, x1 - x0, y1 - y0), marks, float(r[14]), detector="yunet"))
        return _in_order(faces)


class WholeImage:
    """No detection: every image is one face, the whole of it (a folder of face crops, such as
    FER2013's own). Named ``whole``."""

    name = "whole"

    def detect(self, gray: np.ndarray) -> list[Face]:
        h, w = gray.shape[:2]
        return [Face((0, 0, int(w), int(h)), whole_image=True, detector="whole")]


class WholeImageIfNone:
    """``detector``, and where it finds no face, the whole image as one face (``mtcnn+whole``,
    ``haar+whole``): for folders of face crops, where a face cut to fill the frame can escape the
    detector. A photo without a face then gets a face too, so it is not the default."""

    def __init__(self, detector: FaceDetector):
        self.detector, self.name = detector, f"{detector.name}+whole"

    def detect(self, gray: np.ndarray) -> list[Face]:
        return self.detector.detect(gray) or WholeImage().detect(gray)


DETECTORS = {"yunet": YuNetFaceDetector, "mtcnn": MtcnnFaceDetector, "haar": HaarFaceDetector}


def make_detector(name: str, settings: dict | None = None) -> FaceDetector:
    """The detector ``name``; ``settings``: params.yaml's ``predict`` section (``yunet`` reads its
    ``detector_threshold`` and ``detector_min_side``; without settings, the package's copy of params)."""
    if name not in DETECTOR_NAMES:
        raise FerError(f"unknown face detector {name!r}; allowed: {', '.join(DETECTOR_NAMES)}")
    if name == "whole":
        return WholeImage()
    base, plus, _ = name.partition("+")
    if base == "yunet":
        if settings is None:
            from .settings import photo_settings

            settings = photo_settings()
        found = YuNetFaceDetector(settings["detector_threshold"], settings["detector_min_side"])
    else:
        found = DETECTORS[base]()
    return WholeImageIfNone(found) if plus else found


# --------------------------------------------------------------------------------------------
# The crop the model reads


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.1) -> np.ndarray:
    """The face box grown by ``margin`` on each side (clipped), resized to 48x48."""
    import cv2

    x, y, w, h = box
    dx, dy = int(w * margin), int(h * margin)
    H, W = gray.shape[:2]
    x0, y0, x1, y1 = max(0, x - dx), max(0, y - dy), min(W, x + w + dx), min(H, y + h + dy)
    face = gray[y0:y1, x0:x1]
    interp = cv2.INTER_AREA if face.shape[0] > SIZE else cv2.INTER_LINEAR
    return cv2.resize(face, (SIZE, SIZE), interpolation=interp)


def alignment_matrix(landmarks: dict[str, tuple[float, float]],
                     template: dict[str, tuple[float, float]] = TEMPLATE) -> np.ndarray:
    """The 2x3 similarity transform photo -> 48x48 crop: the rotation that makes the eye line as
    level as the template's (exactly), then the scale and shift that put the five landmarks
    nearest (least squares) to the template's."""
    src = np.array([landmarks[k] for k in LANDMARKS], np.float64)
    dst = np.array([template[k] for k in LANDMARKS], np.float64)
    eye = src[1] - src[0]
    teye = dst[1] - dst[0]
    theta = math.atan2(teye[1], teye[0]) - math.atan2(eye[1], eye[0])
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    r = src @ rot.T
    rc, dc = r - r.mean(0), dst - dst.mean(0)
    s = float((rc * dc).sum() / max((rc * rc).sum(), 1e-9))
    t = dst.mean(0) - s * r.mean(0)
    return np.hstack([s * rot, t[:, None]])


def align_face(gray: np.ndarray, landmarks: dict[str, tuple[float, float]],
               template: dict[str, tuple[float, float]] = TEMPLATE) -> np.ndarray:
    """The 48x48 crop framed like FER2013's faces (``alignment_matrix`` onto ``template``). A large
    face is first area-downscaled to about the crop's scale, so the warp does not alias; the border
    outside the photo repeats its edge pixels."""
    import cv2

    m = alignment_matrix(landmarks, template)
    s = float(np.hypot(*m[0, :2]))
    if s < 0.5:
        # the photo region the crop covers, then downscale it by s with area averaging
        inv = cv2.invertAffineTransform(m)
        corners = np.array([[0, 0, 1], [SIZE, 0, 1], [0, SIZE, 1], [SIZE, SIZE, 1]], np.float64) @ inv.T
        x0, y0 = np.floor(corners.min(0)).astype(int) - 2
        x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
        H, W = gray.shape[:2]
        region = cv2.copyMakeBorder(gray[max(0, y0):min(H, y1), max(0, x0):min(W, x1)],
                                    max(0, -y0), max(0, y1 - H), max(0, -x0), max(0, x1 - W),
                                    cv2.BORDER_REPLICATE)
        small = cv2.resize(region, (max(1, round(region.shape[1] * s)), max(1, round(region.shape[0] * s))),
                           interpolation=cv2.INTER_AREA)
        fx, fy = small.shape[1] / region.shape[1], small.shape[0] / region.shape[0]
        # photo point q = (u / f) + (x0, y0) for a point u of `small`
        m = m @ np.array([[1 / fx, 0, x0], [0, 1 / fy, y0], [0, 0, 1]], np.float64)
        gray = small
    return cv2.warpAffine(gray, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def face_crop(gray: np.ndarray, face: Face, margin: float = 0.1) -> np.ndarray:
    """The model's input for one detected face: aligned when the detector gave landmarks, else
    the box with ``margin``."""
    if face.landmarks:
        return align_face(gray, face.landmarks, TEMPLATES[face.detector])
    return crop_face(gray, face.box, margin)


def eye_angle(landmarks: dict[str, tuple[float, float]]) -> float:
    """Degrees the eye line is turned from level (positive: the right eye lower)."""
    (lx, ly), (rx, ry) = landmarks["left_eye"], landmarks["right_eye"]
    return math.degrees(math.atan2(ry - ly, rx - lx))
