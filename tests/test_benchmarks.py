"""The benchmarks run at tiny sizes, so that they cannot rot; their real figures come from quiet
machines (benchmarks/README.md)."""

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO
from helpers import tiny_model_file

pytestmark = pytest.mark.slow


def test_the_load_benchmark_runs_and_reports_every_request(tmp_path):
    out = tmp_path / "load.json"
    r = subprocess.run([sys.executable, str(REPO / "benchmarks/serve_load.py"), "--model",
                        str(tiny_model_file(tmp_path / "tiny.keras")), "--clients", "2", "--requests", "2",
                        "--workers", "1", "--detectors", "yunet", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    assert row["requests"] == 4 and row["errors"] == 0 and row["p99_ms"] >= row["p50_ms"] > 0
    assert row["peak_rss_mb"] > 100 and "| yunet | 1 | 4 | 0 |" in r.stdout


def test_the_round_trip_benchmark_runs_on_a_tiny_test_split(tmp_path):
    import numpy as np

    from conftest import synthetic_face

    x = np.stack([synthetic_face(i) for i in range(8)])[..., None]
    np.savez(tmp_path / "test.npz", x=x, y=np.arange(8) % 7, votes=np.zeros((8, 10), np.int16))
    out = tmp_path / "rt.json"
    model = str(tiny_model_file(tmp_path / "tiny.keras"))
    r = subprocess.run([sys.executable, str(REPO / "benchmarks/photo_roundtrip.py"), "--model", model, model,
                        "--data", str(tmp_path / "test.npz"), "--faces", "8", "--detectors", "haar",
                        "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["faces"] == 8 and res["photos"] == 6 and len(res["models"]) == 2
    first, second = (m["detectors"]["haar"] for m in res["models"])
    # the small-face and turned layouts report their own rows, each with its gap to the model alone
    assert set(first["by_layout"]) == {"scene", "fills", "group", "small", "turned"}
    assert first["by_layout"]["small"]["faces"] == first["by_layout"]["turned"]["faces"] == 1
    assert "| small | 1 |" in r.stdout and "| turned | 1 |" in r.stdout
    # one table per model on the same photos; the time per photo is the first model's (it detected)
    assert second["found"] == first["found"] and second["seconds_per_photo"] is None
    rows = [line for line in r.stdout.splitlines() if line.startswith("| haar |")]
    assert first["seconds_per_photo"] > 0 and len(rows) == 2
    # the second model against the first, paired on the same faces: the same model gains nothing
    assert f"| {model} +views | haar |" not in r.stdout
    (compared,) = [line for line in r.stdout.splitlines() if line.startswith(f"| {model} | haar |")]
    assert compared.count("+0.0 pt (p = 1)") == 6, compared
    # face crops only (--layouts fills): the whole image is a face each time for `whole`
    r = subprocess.run([sys.executable, str(REPO / "benchmarks/photo_roundtrip.py"), "--model", model,
                        "--data", str(tmp_path / "test.npz"), "--faces", "3", "--layouts", "fills",
                        "--detectors", "whole", "haar+whole", "--json", str(out)], capture_output=True, text=True,
                        timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["photos"] == 3 and set(res["models"][0]["detectors"]["whole"]["by_layout"]) == {"fills"}
    assert all(d["found"] == 1.0 and d["false_faces"] == 0 for d in res["models"][0]["detectors"].values())


def test_the_input_and_backend_benchmark_runs_every_row():
    # tf.data (this checkout and --ref), FaceBatches on TensorFlow, and Keras on JAX in a child.
    r = subprocess.run([sys.executable, str(REPO / "benchmarks/train_speed.py"), "--feeds", "--ref", "HEAD",
                        "--steps", "2", "--warmup", "1", "--repeats", "1"],
                       capture_output=True, text=True, timeout=900, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line for line in r.stdout.splitlines() if line.strip().endswith(tuple("0123456789"))]
    assert len(rows) == 4 and "JAX, FaceBatches" in r.stdout and "augment.py at HEAD" in r.stdout, r.stdout


def test_the_inference_benchmark_times_every_stage_for_every_detector(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "benchmarks/inference_speed.py"), "--model",
                        str(tiny_model_file(tmp_path / "tiny.keras")), "--tflite", str(tmp_path / "none.tflite"),
                        "--repeat", "2", "--faces", "64"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = {line.split()[0]: line.split() for line in r.stdout.splitlines() if line.split()}
    assert lines["haar"][6] == "1.00", r.stdout     # decode detect crop classify total, x Haar
    for name in ("yunet", "mtcnn"):
        assert len(lines[name]) >= 7 and all(float(v) >= 0 for v in lines[name][1:6]), r.stdout
    assert "keras: batched inference" in r.stdout and "tflite:" in r.stdout


def test_the_round_trip_names_detector_variants(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))   # as when run as a script: its records module
    spec = importlib.util.spec_from_file_location("photo_roundtrip", REPO / "benchmarks/photo_roundtrip.py")
    roundtrip = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(roundtrip)
    d = roundtrip.detector_named("mtcnn-upright~edge/0.6,0.7@0.7")
    assert (d.pad_fill, d.retry_angles, d.retry_views, d.stage_thresholds, d.min_confidence) == \
        ("edge", (), (), (0.6, 0.7), 0.7)
    d = roundtrip.detector_named("mtcnn:")
    assert (d.pad_fill, d.retry_views, d.turned_search) == ("mean", (), "unless_one")
    d = roundtrip.detector_named("yunet-turned@0.5")
    assert d.turns and d.threshold == 0.5 and roundtrip.detector_named("yunet").turns == ()
    with pytest.raises(SystemExit, match="mtcnn~zero: unknown pad fill 'zero'; allowed: mean, edge"):
        roundtrip.detector_named("mtcnn~zero")
    with pytest.raises(SystemExit, match="unknown view 'sideways'; allowed: mirrored, equalized"):
        roundtrip.detector_named("mtcnn:mirrored,sideways")
    with pytest.raises(SystemExit, match="unknown turned search 'twice'"):
        roundtrip.detector_named("mtcnn-twice")


def test_the_detector_probe_runs_with_mtcnn_alone(tmp_path):
    # BlazeFace's package is not a dependency (benchmarks/blazeface_probe.py says why), so CI runs the
    # probe's own path, photos, matching and table, with MTCNN only.
    import numpy as np

    from conftest import synthetic_face

    np.savez(tmp_path / "test.npz", x=np.stack([synthetic_face(i) for i in range(5)])[..., None])
    r = subprocess.run([sys.executable, str(REPO / "benchmarks/blazeface_probe.py"), "--data",
                        str(tmp_path / "test.npz"), "--faces", "5", "--missed", str(tmp_path / "missed.png"),
                        "--models"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "5 PrivateTest faces in 3 photos" in r.stdout and "| mtcnn |" in r.stdout, r.stdout
    assert (tmp_path / "missed.png").stat().st_size > 0 and "found by no detector" in r.stdout
