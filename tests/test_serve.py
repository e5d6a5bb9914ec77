"""Real HTTP on loopback: the photo service (`fer serve`) and `mlflow models serve`."""

import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest

from helpers import astronaut_gray, free_port, tiny_model_file, wait_http

pytestmark = pytest.mark.slow


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(url: str, body: bytes, content_type: str) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture(scope="module")
def photo_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    model = tiny_model_file(d / "tiny.keras")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fer_pipeline.cli", "serve", "--model", str(model),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_photo_upload_returns_faces_with_emotions(photo_server):
    import cv2

    url, _ = photo_server
    ok, png = cv2.imencode(".png", astronaut_gray())
    status, body = post(url + "/predict", *multipart("file", "astronaut.png", png.tobytes()))
    assert status == 200
    assert len(body["faces"]) == 1 and len(body["faces"][0]["probabilities"]) == 7
    assert (body["width"], body["height"]) == (512, 512)


def test_bad_upload_is_a_clear_4xx_and_the_server_stays_up(photo_server):
    url, proc = photo_server
    status, body = post(url + "/predict", *multipart("file", "notes.txt", b"this is not an image"))
    assert status == 400 and "not a readable image" in body["detail"]
    status, body = post(url + "/predict", b"{}", "application/json")
    assert status == 422
    assert proc.poll() is None
    with urllib.request.urlopen(url + "/health", timeout=10) as r:
        assert json.loads(r.read())["status"] == "ok"


def test_mlflow_models_serve_returns_seven_probabilities(tmp_path):
    import mlflow

    from fer_pipeline import tracking
    from fer_pipeline.evaluation import register_and_decide
    from fer_pipeline.models import build_model
    from fer_pipeline.training import log_model

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        tracking.setup("serve-test", tmp_path)
        with mlflow.start_run() as run:
            log_model(build_model("bn_vgg", widths=(8,), dense=0, dropout=0.0))
        register_and_decide(run.info.run_id, "fer-serve", 0.5)
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
        mlflow.set_tracking_uri(None)
    port = free_port()
    # mlflow starts `uvicorn` by name: the venv's bin must be on PATH, as it is for a user in the venv.
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "PATH": f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/fer-serve@champion",
                             "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc, timeout=180)
        faces = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).round().tolist()
        status, body = post(f"http://127.0.0.1:{port}/invocations", json.dumps({"inputs": faces}).encode(),
                            "application/json")
        assert status == 200
        probs = np.asarray(body["predictions"])
        assert probs.shape == (3, 7)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
