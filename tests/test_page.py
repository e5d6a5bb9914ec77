"""The page of `fer serve` in a real headless Chromium (Debian's `chromium`, driven by Playwright):
a photo with a face gets a box and a label; a file that is not an image gets a readable message."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO, astronaut_gray, free_port, tiny_model_file, wait_http, write_png

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("FER_TEST_ARTIFACTS", REPO / "test-artifacts"))
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: `apt-get install chromium` (.ci/run installs it)")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("page")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fer_pipeline.cli", "serve", "--model",
                             str(tiny_model_file(d / "tiny.keras")), "--port", str(port), "--record", "none"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:   # one per module: Playwright's sync API does not nest
        yield pw


@pytest.fixture(scope="module")
def page(playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1100, "height": 1400})
    yield page
    browser.close()


def test_a_photo_gets_a_box_a_label_and_seven_bars(server, page, tmp_path):
    photo = write_png(tmp_path / "astronaut.png", astronaut_gray())
    page.goto(server + "/")
    page.wait_for_function("document.getElementById('model').textContent.includes('tiny.keras')")
    page.set_input_files("#files", str(photo))
    page.wait_for_selector(".box .face-label", timeout=60_000)
    assert page.locator(".photo").count() == 1 and page.locator(".box").count() == 1
    label = page.locator(".face-label").inner_text()
    # the tiny untrained model is unsure of every face (top probability near 1/7, under
    # predict.min_confidence 0.4): the page says so, with its best guess
    assert re.fullmatch(r"1: uncertain \((angry|disgust|fear|happy|neutral|sad|surprise)\?\) \d+%", label), label
    assert page.locator(".face h3").inner_text().startswith("Face 1: uncertain (most likely ")
    # The box sits on the face: astronaut's face is in the upper middle of the 512x512 photo.
    img, box = page.locator(".frame img").bounding_box(), page.locator(".box").bounding_box()
    cx = (box["x"] + box["width"] / 2 - img["x"]) / img["width"]
    cy = (box["y"] + box["height"] / 2 - img["y"]) / img["height"]
    assert 0.3 < cx < 0.7 and 0.1 < cy < 0.5, (cx, cy)
    assert page.locator(".face .bar").count() == 7
    assert "answered by" in page.locator("#status").inner_text()
    assert page.locator("#error").is_hidden()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve_page.png"), full_page=True)


def test_a_file_that_is_not_an_image_shows_a_readable_error(server, page, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    page.goto(server + "/")
    page.set_input_files("#files", str(notes))
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    assert page.locator("#error").inner_text() == (
        "Could not analyse: notes.txt: not a readable image (JPEG, PNG, WebP, ...)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "serve_page_error.png"))


def test_the_docs_link_opens_the_training_runs_of_the_mlflow_ui(tmp_path, page):
    # MLflow 3.17's UI opens an experiment on its GenAI overview; docs/mlflow.md's link must land on
    # the training runs, where the comparison walkthrough starts.
    import mlflow

    from fer_pipeline import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        tracking.setup("fer2013", tmp_path)
        with mlflow.start_run(run_name="readme-walkthrough-run"):
            mlflow.log_metric("val_accuracy", 0.5, step=1)
        exp_id = mlflow.get_experiment_by_name("fer2013").experiment_id
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
        mlflow.set_tracking_uri(None)
    walkthrough = (REPO / "docs/mlflow.md").read_text()
    link = "http://127.0.0.1:5000/#/experiments/1/runs"
    assert link in walkthrough and exp_id == "1"  # the first experiment of a fresh store
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=180)
        page.goto(link.replace("5000", str(port)))
        page.wait_for_selector("text=readme-walkthrough-run", timeout=60_000)
        assert page.get_by_text("Training runs").first.is_visible()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "mlflow_training_runs.png"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def write_y4m(path: Path, frames: int = 10) -> Path:
    """A camera file Chromium plays as its fake webcam (Y4M, 4:2:0): the astronaut's face, still."""
    import numpy as np

    gray = np.full((480, 640), 100, np.uint8)
    gray[:, 64:576] = astronaut_gray()[16:496]
    chroma = np.full((240, 320), 128, np.uint8).tobytes()
    with open(path, "wb") as fh:
        fh.write(b"YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg\n")
        for _ in range(frames):
            fh.write(b"FRAME\n" + gray.tobytes() + chroma + chroma)
    return path


def test_the_live_camera_shows_boxes_and_smoothed_labels_and_metrics_count_frames(server, playwright, tmp_path):
    camera = write_y4m(tmp_path / "camera.y4m")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        *CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}"])
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 1200})
        page.goto(server + "/")
        page.click("#live")
        page.wait_for_selector("#live-frame .box .face-label", timeout=60_000)
        page.wait_for_function("document.getElementById('live-status').textContent.includes('frames/s')",
                               timeout=60_000)
        label = page.locator("#live-frame .face-label").first.inner_text()
        assert re.fullmatch(r"1: (angry|disgust|fear|happy|neutral|sad|surprise)", label), label
        assert page.locator("#live-faces .face .bar").count() == 7
        # the box sits on the face: the astronaut's face is in the upper middle of the frame
        video, box = page.locator("#live-cam").bounding_box(), page.locator("#live-frame .box").first.bounding_box()
        cx = (box["x"] + box["width"] / 2 - video["x"]) / video["width"]
        assert 0.3 < cx < 0.7, cx
        # a few more frames, however slow the machine (other tests may run beside this one)
        deadline = time.time() + 60
        while frames_counted(server) < 3 and time.time() < deadline:
            page.wait_for_timeout(200)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "serve_page_live.png"))
    finally:
        browser.close()
    assert frames_counted(server) >= 3


def frames_counted(server: str) -> float:
    """``fer_frames_total`` from the service's /metrics."""
    import urllib.request

    metrics = urllib.request.urlopen(server + "/metrics", timeout=10).read().decode()
    (line,) = [x for x in metrics.splitlines() if x.startswith("fer_frames_total ")]
    return float(line.split()[1])


def test_a_video_upload_shows_its_timeline(server, page, tmp_path):
    from test_video import write_clip

    clip = write_clip(tmp_path / "clip.avi")
    page.goto(server + "/")
    page.set_input_files("#files", str(clip))
    page.wait_for_selector("figure.video img", timeout=60_000)
    caption = page.locator("figure.video figcaption").inner_text()
    assert caption.startswith("clip.avi: 20 frames sampled; face 1: mostly ") and "face 2: mostly" in caption
    assert page.locator("figure.video img").evaluate("img => img.naturalWidth") > 300
