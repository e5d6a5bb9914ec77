"""The photo service and its page: ``fer serve``.

``GET /``          a page where a person tries the model on their own photos (no internet needed:
                   its HTML, JS and CSS are served from ``web/`` in this package)
``POST /predict``  one or more photos (form field ``file``, repeatable) -> faces, labels and the
                   seven probabilities per face, which model answered, and how long it took
``POST /frame``    one frame of a live camera (field ``file``): the same answer, under the same limits,
                   counted as a frame (the page's live mode sends a few a second)
``POST /video``    one video file (field ``file``, at most ``Limits.max_video_bytes``) -> its timeline
                   (``video``): per face track the dominant emotion and its changes, and the figure
``GET /health``    liveness, the model, the detector, whether faces are being recorded, and the
                   smoothing window the page's live mode uses (``predict.smooth_frames``)
``GET /metrics``   Prometheus metrics (``telemetry``): requests, latency, photos, faces, emotions,
                   top probabilities, photos without a face, refused uploads by reason

Handlers are plain ``def``: FastAPI runs them in its thread pool, so decoding, face detection and
the model never block the event loop (``/health`` answers while a photo is processed). One lock
keeps detection and the model to one request at a time (OpenCV's cascade is not shared safely
across threads); waiting requests hold a pool thread, not the loop. Limits, checked before any
decoding: bytes per photo (413), pixels per photo from the image header (413), photos per request
(413), faces per photo (the largest are kept; the rest are counted). The plain model (48x48 faces
in, 7 probabilities out) is served by ``mlflow models serve`` instead (docs/serving.md).

Each classified face is appended to the face record (``monitoring.FaceRecord``: emotion,
probabilities, size, brightness, contrast; never the image) that ``fer monitor`` checks for drift.
``fer serve --workers N`` starts N processes (uvicorn), each loading the model once, on one port.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from . import telemetry
from .faces import FaceDetector, make_detector
from .monitoring import FaceRecord
from .predict import ImageTooLarge, add_photo_arguments, analyse, decode_image
from .predictor import FACE_SHAPE, Predictor
from .settings import photo_settings, predict_defaults

WEB = Path(__file__).parent / "web"


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 20 * 1024 * 1024     # per photo
    max_pixels: int = 40_000_000          # per photo, from the header (40 Mpx: any phone photo)
    max_photos: int = 10                  # per request
    max_faces: int = 20                   # per photo; the largest are kept
    max_video_bytes: int = 200 * 1024 * 1024   # per video upload (POST /video)


def create_app(predictor: Predictor, detector: FaceDetector | None = None, limits: Limits | None = None,
               settings: dict | None = None, record: FaceRecord | None = None):
    settings = {**predict_defaults(), **(settings or {})}
    detector = detector or make_detector(settings["detector"], settings)
    limits = limits or Limits()
    work = threading.Lock()
    predictor(np.zeros((1, *FACE_SHAPE), np.uint8))  # build the model's graph now, not in the first request
    app = FastAPI(title="FER2013 emotion service", version="2")
    app.mount("/static", StaticFiles(directory=WEB), name="static")

    _add_telemetry(app)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(WEB / "index.html")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": predictor.spec, "model_info": predictor.info,
                "detector": detector.name, "recording": bool(record and record.recording),
                "record": record.error if record and record.error else (record.path if record else None),
                "smooth_frames": settings["smooth_frames"]}

    @app.get("/limits")
    def get_limits() -> dict:
        return limits.__dict__

    @app.post("/frame")
    def frame(file: UploadFile = File(...)) -> dict:
        telemetry.FRAMES.inc()
        return predict([file])

    @app.post("/video")
    def video(file: UploadFile = File(...)) -> dict:
        return _video_answer(file, predictor, detector, settings, limits, work)

    @app.post("/predict")
    def predict(file: list[UploadFile] = File(...)) -> dict:
        t0 = time.perf_counter()
        decoded, errors = _read_photos(file, limits)
        with work:
            results = analyse(decoded, predictor, detector, settings["margin"], max_faces=limits.max_faces,
                              min_confidence=settings["min_confidence"], crop_stats=True)
        faces = [f for r in results for f in r.faces]
        if record is not None:
            record.add(faces, predictor.spec)
        for f in faces:  # kept for the record and the metrics, not part of the answer
            f.pop("brightness"), f.pop("contrast")
        photos = [r.to_dict() for r in results]
        telemetry.observe_photos(photos)
        return {**photos[0], "photos": photos, "errors": [m for _, m in errors], "model": predictor.info,
                "seconds": round(time.perf_counter() - t0, 3)}

    return app


def _add_telemetry(app) -> None:
    """Every request counted and timed by route (``telemetry``), and ``GET /metrics`` for Prometheus."""
    @app.middleware("http")
    async def count(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        name = getattr(route, "path", None) or "other"   # the route's template, never a raw URL
        telemetry.REQUESTS.labels(name, str(response.status_code)).inc()
        telemetry.LATENCY.labels(name).observe(time.perf_counter() - t0)
        return response

    @app.get("/metrics", include_in_schema=False)
    def metrics():
        return Response(telemetry.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _read_photos(files: list[UploadFile], limits: Limits) -> tuple[list, list]:
    """([(name, gray)], [(status, message)]): each upload decoded, or refused with a reason; none
    usable is an HTTP error (the first reason)."""
    if len(files) > limits.max_photos:
        telemetry.REFUSED.labels("count").inc()
        raise HTTPException(413, f"{len(files)} photos in one request; the limit is {limits.max_photos}")
    errors, decoded = [], []
    for upload in files:
        name = upload.filename or "upload"
        data = upload.file.read(limits.max_bytes + 1)
        if len(data) > limits.max_bytes:
            telemetry.REFUSED.labels("size").inc()
            errors.append((413, f"{name}: larger than {limits.max_bytes / 1e6:.0f} MB"))
            continue
        try:
            gray = decode_image(data, limits.max_pixels)
        except ImageTooLarge as exc:
            telemetry.REFUSED.labels("pixels").inc()
            errors.append((413, f"{name}: {exc}"))
            continue
        if gray is None:
            telemetry.REFUSED.labels("type").inc()
            errors.append((400, f"{name}: not a readable image (JPEG, PNG, WebP, ...)"))
            continue
        decoded.append((name, gray))
    if not decoded:  # nothing usable: the first error is the answer
        code, message = errors[0]
        raise HTTPException(code, message)
    return decoded, errors


def _video_answer(file: UploadFile, predictor: Predictor, detector: FaceDetector, settings: dict,
                  limits: Limits, work: threading.Lock) -> dict:
    """An uploaded video's timeline (``video.analyse_video``) with its figure inline."""
    import base64
    import tempfile

    from .errors import FerError
    from .video import VIDEO_SUFFIXES, analyse_video

    suffix = Path(file.filename or "upload.mp4").suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        telemetry.REFUSED.labels("type").inc()
        raise HTTPException(400, f"{file.filename}: not a video file ({', '.join(sorted(VIDEO_SUFFIXES))})")
    with tempfile.TemporaryDirectory(prefix="fer-video-") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        size = 0
        with open(path, "wb") as fh:
            while chunk := file.file.read(1 << 20):
                size += len(chunk)
                if size > limits.max_video_bytes:
                    telemetry.REFUSED.labels("size").inc()
                    raise HTTPException(413, f"{file.filename}: larger than {limits.max_video_bytes / 1e6:.0f} MB")
                fh.write(chunk)
        try:
            with work:
                r = analyse_video(str(path), predictor, detector, settings, Path(tmp) / "timeline", progress=False)
        except FerError as exc:
            telemetry.REFUSED.labels("type").inc()
            raise HTTPException(400, f"{file.filename}: {str(exc).split(': ', 1)[-1]}") from None
        figure = base64.b64encode((Path(tmp) / "timeline" / "timeline.png").read_bytes()).decode()
    telemetry.FRAMES.inc(r["samples"])
    return {"file": file.filename, "samples": r["samples"], "tracks": r["tracks"],
            "complete": r["read"]["complete"], "figure": f"data:image/png;base64,{figure}", "model": predictor.info}


def app_from_env():
    """The app as configured by ``fer serve`` through ``FER_SERVE`` (JSON): what each worker
    process builds (uvicorn's factory), loading the model once per process."""
    from .predictor import load_predictor

    cfg = json.loads(os.environ["FER_SERVE"])
    record = FaceRecord(cfg["record"], cfg["max_rows"]) if cfg.get("record") else None
    return create_app(load_predictor(cfg["model"]), limits=Limits(**cfg["limits"]), settings=cfg["settings"],
                      record=record)


def add_parser(sub) -> None:
    d = Limits()
    p = sub.add_parser("serve", help="HTTP service and page: photos -> faces and emotions (GET / for the page)")
    p.add_argument("--model", help="as for `fer predict` (default: the registry champion, else the workspace's "
                                   "models/model.keras, else the shipped model)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-bytes", type=int, default=d.max_bytes, help="per photo (default 20 MB)")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels, help="per photo, read from the header")
    p.add_argument("--max-photos", type=int, default=d.max_photos, help="per request")
    p.add_argument("--max-faces", type=int, default=d.max_faces, help="per photo (the largest are kept)")
    p.add_argument("--workers", type=int, default=1, help="processes serving the port (each loads the model)")
    p.add_argument("--record", help="face record for fer monitor (default: monitor.record in params.yaml); "
                                    "'none' records nothing")
    add_photo_arguments(p)

    def func(args):
        import tempfile

        import uvicorn

        from .predictor import load_predictor

        monitor = {"record": "reports/monitor/faces.db", "max_rows": 1_000_000}
        if Path("params.yaml").exists():
            from .params import load

            monitor = load(["monitor"])["monitor"]
        record = args.record or monitor["record"]
        load_predictor(args.model)  # a bad model is one line here, not an error in every worker
        os.environ["FER_SERVE"] = json.dumps({
            "model": args.model, "limits": asdict(Limits(args.max_bytes, args.max_pixels, args.max_photos,
                                                         args.max_faces)),
            "settings": photo_settings(args.detector, args.margin, args.min_confidence),
            "record": None if record == "none" else record, "max_rows": monitor["max_rows"]})
        if args.workers > 1:  # before the workers import prometheus_client: they share one metrics folder
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fer-metrics-")
        uvicorn.run("fer_pipeline.serve:app_from_env", factory=True, workers=args.workers, host=args.host,
                    port=args.port, log_level="info")

    p.set_defaults(func=func)
