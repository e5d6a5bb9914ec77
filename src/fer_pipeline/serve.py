"""HTTP serving of photos: ``POST /predict`` with an uploaded image returns its faces and emotions.

A small FastAPI app around ``predict.analyse``; run it with ``fer serve``. The plain model (48x48
faces in, 7 probabilities out) is served by ``mlflow models serve`` instead (see README).
"""

from __future__ import annotations

from fastapi import FastAPI, File, HTTPException, UploadFile

from .predict import FaceDetector, HaarFaceDetector, Predictor, analyse, decode_image

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def create_app(predictor: Predictor, detector: FaceDetector | None = None):
    detector = detector or HaarFaceDetector()
    app = FastAPI(title="FER2013 emotion service", version="1")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": predictor.spec}

    @app.post("/predict")
    async def predict(file: UploadFile = File(...)) -> dict:
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(status_code=413, detail=f"upload larger than {MAX_UPLOAD_BYTES} bytes")
        gray = decode_image(data)
        if gray is None:
            raise HTTPException(status_code=400, detail="upload is not a readable image (JPEG, PNG, ...)")
        res = analyse([(file.filename or "upload", gray)], predictor, detector)[0]
        return {"file": res.file, "width": res.width, "height": res.height, "faces": res.faces}

    return app


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="HTTP service: POST /predict with a photo -> faces and emotions")
    p.add_argument("--model", help="as for `fer predict` (default: registry champion, else models/model.keras)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)

    def func(args):
        import uvicorn

        from .predict import load_predictor

        uvicorn.run(create_app(load_predictor(args.model)), host=args.host, port=args.port, log_level="info")

    p.set_defaults(func=func)
