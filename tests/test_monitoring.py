"""The photo service in production: its face record, drift against the reference, /metrics (one
process and several), and a server killed mid-request."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from test_serve import jpeg, multipart

from fer_pipeline.faces import Face
from fer_pipeline.labels import LABELS
from fer_pipeline.monitoring import FaceRecord, drift, read_window, reference_from_faces
from fer_pipeline.predictor import Predictor
from fer_pipeline.serve import Limits, create_app

from helpers import astronaut_gray, free_port, repo_params, tiny_model_file, wait_http

STRIPE = 48 // 7


class Reply:
    def __init__(self, status: int, body: bytes):
        self.status_code, self.text = status, body.decode()

    def json(self):
        import json

        return json.loads(self.text)


class LoopbackClient:
    """The app served by a real uvicorn on 127.0.0.1 (in a thread), spoken to over HTTP."""

    def __init__(self, app):
        import threading

        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started and time.time() < deadline:
            time.sleep(0.05)

    def request(self, method: str, path: str, content: bytes | None = None, headers: dict | None = None) -> Reply:
        import urllib.error

        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=content, headers=headers or {},
                                     method=method)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return Reply(r.status, r.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.read())

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, content, headers):
        return self.request("POST", path, content, headers)

    def close(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def stripe_faces(classes: np.ndarray, seed: int, offset: float = 0.0) -> np.ndarray:
    """48x48 faces whose class is the brightest of 7 vertical stripes; ``offset`` shifts every
    pixel (darker faces), which changes brightness and nothing else the service measures."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(110, 150, (len(classes), 1, 1))
    img = base + rng.normal(0, rng.uniform(15, 30, (len(classes), 1, 1)), (len(classes), 48, 48))
    for i, k in enumerate(classes):
        img[i, :, k * STRIPE:(k + 1) * STRIPE] += 45
    return np.clip(img + offset, 0, 255).astype(np.uint8)


def stripe_predictor() -> Predictor:
    """Probabilities from the stripes' mean brightness, relative to the brightest: the same for a
    face and its darker copy."""
    def fn(x):
        m = np.stack([x[:, :, k * STRIPE:(k + 1) * STRIPE, 0].mean(axis=(1, 2)) for k in range(7)], 1)
        e = np.exp((m - m.max(1, keepdims=True)) / 12)
        return e / e.sum(1, keepdims=True)
    return Predictor("stripes", "test", fn)


class WholeImage:
    """A detector that finds one face: the whole image (the crop is then the image itself)."""

    name = "whole"

    def detect(self, gray):
        return [Face((0, 0, gray.shape[1], gray.shape[0]))]


def png(img: np.ndarray) -> bytes:
    import cv2

    return cv2.imencode(".png", img)[1].tobytes()


def feed(client: LoopbackClient, faces: np.ndarray) -> None:
    for i in range(0, len(faces), 3):
        body, ctype = multipart("file", "0.png", png(faces[i]), *((f"{j}.png", png(faces[j]))
                                                                  for j in range(i + 1, min(i + 3, len(faces)))))
        r = client.post("/predict", content=body, headers={"Content-Type": ctype})
        assert r.status_code == 200, r.text


@pytest.fixture
def service(tmp_path):
    record = FaceRecord(tmp_path / "faces.db", max_rows=100_000)
    app = create_app(stripe_predictor(), WholeImage(), Limits(max_photos=3),
                     {"detector": "whole", "margin": 0.0, "min_confidence": 0.4}, record)
    client = LoopbackClient(app)
    yield client, record
    client.close()


@pytest.mark.parametrize("case,expected", [("validation faces", []), ("darkened", ["brightness"]),
                                           ("only one emotion", ["emotion"])])
def test_drift_flags_exactly_the_fields_that_changed(service, case, expected):
    client, record = service
    cfg = repo_params()["monitor"]
    rng = np.random.default_rng(1)
    val_classes = rng.choice(7, 1500, p=[0.13, 0.02, 0.14, 0.25, 0.17, 0.17, 0.12])
    ref_faces = stripe_faces(val_classes, seed=2)
    reference = reference_from_faces(ref_faces, stripe_predictor()(ref_faces[..., None]))
    classes = rng.choice(7, 240, p=[0.13, 0.02, 0.14, 0.25, 0.17, 0.17, 0.12])
    if case == "only one emotion":
        classes = np.full(240, LABELS.index("happy"))
    feed(client, stripe_faces(classes, seed=3, offset=-60.0 if case == "darkened" else 0.0))
    window = read_window(record.path)
    assert len(window) == 240
    report = drift(reference, window, cfg["psi_threshold"], cfg["min_faces"])
    assert report.drifted == expected, {k: v["value"] for k, v in report.fields.items()}


def test_metrics_count_a_known_sequence_of_requests_including_refused_uploads(service):
    client, _ = service

    def scrape() -> dict:
        out = {}
        for line in client.get("/metrics").text.splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                out[key] = float(value)
        return out

    before = scrape()
    faces = stripe_faces(np.array([3, 3, 5]), seed=4)
    feed(client, faces)                                                      # 1 request, 3 photos, 3 faces
    body, ctype = multipart("file", "a.txt", b"not an image")
    assert client.post("/predict", content=body, headers={"Content-Type": ctype}).status_code == 400
    body, ctype = multipart("file", "1.png", png(faces[0]), *((f"{i}.png", png(faces[0])) for i in range(2, 5)))
    assert client.post("/predict", content=body, headers={"Content-Type": ctype}).status_code == 413
    client.get("/health")
    after = scrape()

    def delta(key):
        return after.get(key, 0) - before.get(key, 0)

    assert delta('fer_http_requests_total{route="/predict",status="200"}') == 1
    assert delta('fer_http_requests_total{route="/predict",status="400"}') == 1
    assert delta('fer_http_requests_total{route="/predict",status="413"}') == 1
    assert delta('fer_http_requests_total{route="/health",status="200"}') == 1
    assert delta('fer_faces_total{emotion="happy"}') == 2 and delta('fer_faces_total{emotion="sad"}') == 1
    assert delta('fer_uploads_refused_total{reason="type"}') == 1
    assert delta('fer_uploads_refused_total{reason="count"}') == 1
    assert delta("fer_photos_per_request_count") == 1 and delta("fer_faces_per_photo_sum") == 3
    assert delta("fer_top_probability_count") == 3
    assert delta('fer_http_request_seconds_count{route="/predict"}') == 3


def test_the_record_keeps_at_most_max_rows_dropping_the_oldest(tmp_path):
    record = FaceRecord(tmp_path / "r.db", max_rows=5)
    face = {"label": "happy", "score": 0.9, "probabilities": dict.fromkeys(LABELS, 0.1), "box": [0, 0, 48, 48],
            "brightness": 0.0, "contrast": 1.0}
    for i in range(8):
        record.add([{**face, "brightness": float(i)}], "m")
    rows = read_window(tmp_path / "r.db")
    assert rows["brightness"].tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]


def _open_together_and_add(path: str, start: float, rows: int, errors) -> None:
    while time.time() < start:   # both processes open the new file at the same moment
        pass
    record = FaceRecord(path, max_rows=1000)
    face = {"label": "sad", "score": 0.5, "probabilities": dict.fromkeys(LABELS, 0.1), "box": [0, 0, 48, 48],
            "brightness": 1.0, "contrast": 1.0}
    for _ in range(rows):
        record.add([face], "m")
    errors.put(record.error)


def test_workers_that_open_a_new_record_together_both_record(tmp_path):
    # `fer serve --workers 2` starts its workers together; SQLite refuses a racing switch to WAL at
    # once ("database is locked"), which once turned one worker's recording off for good.
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    for trial in range(30):
        path, errors = str(tmp_path / f"r{trial}.db"), ctx.Queue()
        start = time.time() + 0.3
        procs = [ctx.Process(target=_open_together_and_add, args=(path, start, 5, errors)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert [errors.get(timeout=5) for _ in procs] == [None, None], f"trial {trial}"
        assert len(read_window(path)) == 10


def test_an_unusable_record_gives_one_line_and_the_service_still_answers(tmp_path, capfd):
    (tmp_path / "faces.db").write_bytes(b"this is not a database" * 100)
    record = FaceRecord(tmp_path / "faces.db", max_rows=10)
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: face record") and "recording is off" in err[0]
    client = LoopbackClient(create_app(stripe_predictor(), WholeImage(), Limits(),
                                       {"detector": "whole", "margin": 0.0, "min_confidence": 0.4}, record))
    try:
        feed(client, stripe_faces(np.array([1]), seed=5))
        health = client.get("/health").json()
    finally:
        client.close()
    assert health["recording"] is False and "recording is off" in health["record"]


@pytest.mark.slow
def test_a_server_killed_mid_request_leaves_every_completed_request_in_the_record(tmp_path):
    port, db = free_port(), tmp_path / "faces.db"
    proc = subprocess.Popen([sys.executable, "-m", "fer_pipeline.cli", "serve", "--model",
                             str(tiny_model_file(tmp_path / "tiny.keras")), "--port", str(port), "--detector", "haar",
                             "--record", str(db)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc)
        body, ctype = multipart("file", "a.jpg", jpeg(astronaut_gray()))
        done = 0
        for _ in range(6):
            req = urllib.request.Request(f"{url}/predict", data=body, headers={"Content-Type": ctype})
            with urllib.request.urlopen(req, timeout=60) as r:
                assert r.status == 200
            done += 1
        # one more in flight, then SIGKILL: no shutdown code runs
        (tmp_path / "body").write_bytes(body)
        inflight = subprocess.Popen([sys.executable, "-c", "import sys, urllib.request as u; u.urlopen(u.Request("
                                     "sys.argv[1], data=open(sys.argv[2], 'rb').read(), "
                                     "headers={'Content-Type': sys.argv[3]}))",
                                     f"{url}/predict", str(tmp_path / "body"), ctype], stderr=subprocess.DEVNULL)
        time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        inflight.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        n = con.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
    assert n in (done, done + 1)   # one face per completed request; the killed one may have committed


@pytest.mark.slow
def test_metrics_are_those_of_the_whole_service_across_two_workers(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fer_pipeline.cli", "serve", "--model",
                             str(tiny_model_file(tmp_path / "tiny.keras")), "--port", str(port), "--workers", "2",
                             "--detector", "haar", "--record", str(tmp_path / "faces.db")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc, timeout=240)
        body, ctype = multipart("file", "a.jpg", jpeg(astronaut_gray()))
        for _ in range(10):
            req = urllib.request.Request(f"{url}/predict", data=body, headers={"Content-Type": ctype})
            urllib.request.urlopen(req, timeout=60).read()
        totals = set()
        for _ in range(6):   # whichever worker answers the scrape, the totals are the service's
            text = urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode()
            line = next(x for x in text.splitlines() if x.startswith('fer_http_requests_total{route="/predict"'))
            totals.add(float(line.rsplit(" ", 1)[1]))
        assert totals == {10.0}
        with sqlite3.connect(tmp_path / "faces.db") as con:
            assert con.execute("SELECT COUNT(*) FROM faces").fetchone()[0] == 10
    finally:
        proc.terminate()
        proc.wait(timeout=60)
