"""The photo service and its page: ``fer serve``.

``GET /``          a page where a person tries the model on their own photos (no internet needed:
                   its HTML, JS and CSS are served from ``web/`` in this package)
``POST /predict``  one or more photos (form field ``file``, repeatable) -> faces, labels and the
                   seven probabilities per face, which model answered, and how long it took
``GET /health``    liveness and the model

Handlers are plain ``def``: FastAPI runs them in its thread pool, so decoding, face detection and
the model never block the event loop (``/health`` answers while a photo is processed). One lock
keeps detection and the model to one request at a time (OpenCV's cascade is not shared safely
across threads); waiting requests hold a pool thread, not the loop. Limits, checked before any
decoding: bytes per photo (413), pixels per photo from the image header (413), photos per request
(413), faces per photo (the largest are kept; the rest are counted). The plain model (48x48 faces
in, 7 probabilities out) is served by ``mlflow models serve`` instead (see README).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from .faces import FaceDetector, make_detector
from .predict import DEFAULTS, ImageTooLarge, add_photo_arguments, analyse, decode_image, photo_settings
from .predictor import FACE_SHAPE, Predictor

WEB = Path(__file__).parent / "web"


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 20 * 1024 * 1024     # per photo
    max_pixels: int = 40_000_000          # per photo, from the header (40 Mpx: any phone photo)
    max_photos: int = 10                  # per request
    max_faces: int = 20                   # per photo; the largest are kept


def create_app(predictor: Predictor, detector: FaceDetector | None = None, limits: Limits | None = None,
               settings: dict | None = None):
    settings = settings or DEFAULTS
    detector = detector or make_detector(settings["detector"])
    limits = limits or Limits()
    work = threading.Lock()
    predictor(np.zeros((1, *FACE_SHAPE), np.uint8))  # build the model's graph now, not in the first request
    app = FastAPI(title="FER2013 emotion service", version="2")
    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(WEB / "index.html")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": predictor.spec, "model_info": predictor.info,
                "detector": detector.name}

    @app.get("/limits")
    def get_limits() -> dict:
        return limits.__dict__

    @app.post("/predict")
    def predict(file: list[UploadFile] = File(...)) -> dict:
        t0 = time.perf_counter()
        if len(file) > limits.max_photos:
            raise HTTPException(413, f"{len(file)} photos in one request; the limit is {limits.max_photos}")
        errors, decoded = [], []
        for upload in file:
            name = upload.filename or "upload"
            data = upload.file.read(limits.max_bytes + 1)
            if len(data) > limits.max_bytes:
                errors.append((413, f"{name}: larger than {limits.max_bytes / 1e6:.0f} MB"))
                continue
            try:
                gray = decode_image(data, limits.max_pixels)
            except ImageTooLarge as exc:
                errors.append((413, f"{name}: {exc}"))
                continue
            if gray is None:
                errors.append((400, f"{name}: not a readable image (JPEG, PNG, WebP, ...)"))
                continue
            decoded.append((name, gray))
        if not decoded:  # nothing usable: the first error is the answer
            code, message = errors[0]
            raise HTTPException(code, message)
        with work:
            results = analyse(decoded, predictor, detector, settings["margin"], max_faces=limits.max_faces,
                              min_confidence=settings["min_confidence"])
        photos = [r.to_dict() for r in results]
        first = photos[0]
        return {**first, "photos": photos, "errors": [m for _, m in errors], "model": predictor.info,
                "seconds": round(time.perf_counter() - t0, 3)}

    return app


def add_parser(sub) -> None:
    d = Limits()
    p = sub.add_parser("serve", help="HTTP service and page: photos -> faces and emotions (GET / for the page)")
    p.add_argument("--model", help="as for `fer predict` (default: registry champion, else models/model.keras)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-bytes", type=int, default=d.max_bytes, help="per photo (default 20 MB)")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, help="per photo, read from the header")
    p.add_argument("--max-photos", type=int, default=d.max_photos, help="per request")
    p.add_argument("--max-faces", type=int, default=d.max_faces, help="per photo (the largest are kept)")
    add_photo_arguments(p)

    def func(args):
        import uvicorn

        from .predictor import load_predictor

        limits = Limits(args.max_bytes, args.max_pixels, args.max_photos, args.max_faces)
        settings = photo_settings(args.detector, args.margin, args.min_confidence)
        uvicorn.run(create_app(load_predictor(args.model), limits=limits, settings=settings), host=args.host,
                    port=args.port, log_level="info")

    p.set_defaults(func=func)
