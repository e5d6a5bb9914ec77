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


def multipart(field: str, filename: str, data: bytes, *more: tuple[str, bytes]) -> tuple[bytes, str]:
    """A multipart body with one or more files in form field ``field``."""
    boundary = uuid.uuid4().hex
    body = b""
    for name, content in ((filename, data), *more):
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG file that declares ``width`` x ``height`` pixels (its data is never decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def jpeg(img, **save) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=92, **save)
    return buf.getvalue()


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
                             "--port", str(port), "--max-bytes", "3000000", "--max-pixels", "30000000",
                             "--max-photos", "3", "--max-faces", "5", "--record", str(d / "faces.db")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
    assert body["model"]["source"] == "keras" and body["seconds"] > 0


def test_several_photos_in_one_request_and_per_photo_errors(photo_server):
    url, _ = photo_server
    face = jpeg(astronaut_gray())
    status, body = post(url + "/predict", *multipart("file", "a.jpg", face, ("b.jpg", face), ("c.txt", b"text")))
    assert status == 200
    assert [p["file"] for p in body["photos"]] == ["a.jpg", "b.jpg"]
    assert all(len(p["faces"]) == 1 for p in body["photos"])
    assert body["errors"] == ["c.txt: not a readable image (JPEG, PNG, WebP, ...)"]
    status, body = post(url + "/predict", *multipart("file", "1.jpg", face, *[(f"{i}.jpg", face) for i in (2, 3, 4)]))
    assert status == 413 and body["detail"] == "4 photos in one request; the limit is 3"


def test_limits_answer_413_before_decoding(photo_server):
    url, proc = photo_server
    bomb = png_header_only(20000, 20000)  # 400 megapixels declared in a file of under 100 bytes
    assert len(bomb) < 100
    status, body = post(url + "/predict", *multipart("file", "bomb.png", bomb))
    assert status == 413
    assert body["detail"] == "bomb.png: image is 20000x20000 = 400.0 megapixels; the limit is 30.0 megapixels"
    status, body = post(url + "/predict", *multipart("file", "big.bin", b"\xff" * 3_000_001))
    assert status == 413 and "larger than 3 MB" in body["detail"]
    assert proc.poll() is None


def test_phone_photos_are_turned_upright_by_their_exif_orientation(photo_server):
    from PIL import Image

    url, _ = photo_server
    upright = astronaut_gray()[:400]                  # 512 wide, 400 high
    sideways = np.ascontiguousarray(np.rot90(upright))  # as a phone stores it: 400 wide, 512 high
    exif = Image.Exif()
    exif[0x0112] = 6                                  # "rotate 90 degrees clockwise to display"
    status, body = post(url + "/predict", *multipart("file", "phone.jpg", jpeg(sideways, exif=exif.tobytes())))
    assert status == 200 and (body["width"], body["height"]) == (512, 400)
    (face,) = body["faces"]
    x, y, w, h = face["box"]
    assert abs(x + w / 2 - 224) < 20 and abs(y + h / 2 - 118) < 25 and h > w   # the upright face's place
    # Control: the same pixels without the tag stay sideways: the face lies across the image, lower left
    status, body = post(url + "/predict", *multipart("file", "raw.jpg", jpeg(sideways)))
    assert status == 200 and (body["width"], body["height"]) == (400, 512)
    assert all(f["box"][1] + f["box"][3] / 2 > 200 for f in body["faces"])


def test_health_answers_quickly_while_photos_are_processed(photo_server):
    import threading
    import time

    url, _ = photo_server
    import cv2

    big = cv2.resize(astronaut_gray(), (4000, 3000), interpolation=cv2.INTER_LINEAR)  # 12 Mpx, ~1 MB JPEG
    data = jpeg(big)
    assert len(data) < 3_000_000
    body, ctype = multipart("file", "1.jpg", data, ("2.jpg", data), ("3.jpg", data))
    done = {}
    worker = threading.Thread(target=lambda: done.update(r=post(url + "/predict", body, ctype)))
    t_start = time.perf_counter()
    worker.start()
    time.sleep(0.02)  # the upload has arrived; decoding and detection are under way
    latencies = []
    while worker.is_alive():
        t = time.perf_counter()
        with urllib.request.urlopen(url + "/health", timeout=10) as r:
            assert r.status == 200
        latencies.append(time.perf_counter() - t)
        time.sleep(0.01)   # YuNet takes the photos in a few tenths of a second: sample often
    worker.join()
    busy = time.perf_counter() - t_start
    assert done["r"][0] == 200 and len(done["r"][1]["photos"]) == 3
    assert len(latencies) >= 3, f"the photos took only {busy:.2f} s: too fast to measure"
    # Relative, not a fixed number of ms (a loaded machine slows both alike): a /health queued behind
    # the photos would take most of their time.
    assert max(latencies) < busy / 10, f"/health took up to {max(latencies):.3f} s of the photos' {busy:.2f} s"


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
    from fer_pipeline.models import build_model
    from fer_pipeline.registry import register_and_decide
    from fer_pipeline.tracking import log_model

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        tracking.setup("serve-test", tmp_path)
        with mlflow.start_run() as run:
            log_model(build_model("bn_vgg", 48, widths=(8,), convs_per_stage=1, dense=0, dropout=0.0))
        register_and_decide(run.info.run_id, "fer-serve", {}, 0.05, 0.5)
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
