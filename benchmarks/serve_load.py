"""Load on the photo service: N concurrent clients x M requests each, real photos, on loopback.

    python benchmarks/serve_load.py [--model models/model.keras] [--clients 8] [--requests 10] [--workers 1 2]
                                    [--detectors yunet haar mtcnn]

For each detector and worker count it starts `fer serve --workers W`, waits for /health, sends the requests
(each one photo: scikit-image's astronaut, 512x512, one face), and prints p50/p99 latency,
throughput, errors, /health's worst latency while under load, and the server's peak resident
memory (all its processes, sampled every 50 ms). The throughput of the later worker counts is
given as a ratio to the first's, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from records import add_argument, record, table


def photo_body() -> tuple[bytes, str]:
    import cv2
    from skimage import data

    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    b = uuid.uuid4().hex
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"astronaut.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + jpg.tobytes() + f"\r\n--{b}--\r\n".encode()
    return body, f"multipart/form-data; boundary={b}"


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * 4096
            todo += [int(c) for t in Path(f"/proc/{p}/task").iterdir()
                     for c in (t / "children").read_text().split()]
        except (OSError, ValueError):
            pass
    return total


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(model: str, workers: int, clients: int, requests: int, detector: str) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([sys.executable, "-m", "fer_pipeline.cli", "serve", "--model", model, "--port",
                                 str(port), "--workers", str(workers), "--detector", detector,
                                 "--record", str(Path(tmp) / "faces.db")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 300
            while True:
                try:
                    urllib.request.urlopen(f"{url}/health", timeout=2)
                    break
                except OSError:
                    if proc.poll() is not None or time.time() > deadline:
                        raise RuntimeError("fer serve did not start") from None
                    time.sleep(0.5)
            body, ctype = photo_body()
            warm = urllib.request.Request(f"{url}/predict", data=body, headers={"Content-Type": ctype})
            for _ in range(workers * 2):
                urllib.request.urlopen(warm, timeout=120).read()
            latencies, errors, health = [], [], []
            peak, done = [tree_rss(proc.pid)], threading.Event()

            def sample():
                while not done.is_set():
                    peak.append(tree_rss(proc.pid))
                    t = time.perf_counter()
                    try:
                        urllib.request.urlopen(f"{url}/health", timeout=10).read()
                        health.append(time.perf_counter() - t)
                    except OSError as exc:
                        errors.append(f"health: {exc}")
                    time.sleep(0.05)

            def client():
                for _ in range(requests):
                    t = time.perf_counter()
                    try:
                        req = urllib.request.Request(f"{url}/predict", data=body, headers={"Content-Type": ctype})
                        with urllib.request.urlopen(req, timeout=120) as r:
                            faces = json.loads(r.read())["faces"]
                            if len(faces) != 1:
                                errors.append(f"{len(faces)} faces")
                    except OSError as exc:
                        errors.append(str(exc))
                    latencies.append(time.perf_counter() - t)

            watcher = threading.Thread(target=sample, daemon=True)
            watcher.start()
            t0 = time.perf_counter()
            threads = [threading.Thread(target=client) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            done.set()
            watcher.join()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    lat = sorted(latencies)
    return {"workers": workers, "clients": clients, "requests": len(lat), "errors": len(errors),
            "p50_ms": round(1000 * statistics.median(lat), 1),
            "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
            "requests_per_s": round(len(lat) / wall, 2), "health_max_ms": round(1000 * max(health or [0]), 1),
            "peak_rss_mb": round(max(peak) / 2**20), "error_examples": errors[:3]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/model.keras")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=10, help="per client")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--detectors", nargs="+", default=["yunet", "haar", "mtcnn"],
                    choices=["yunet", "haar", "mtcnn"])
    ap.add_argument("--json", help="also write the figures here")
    add_argument(ap)
    a = ap.parse_args()
    rows = [{"detector": d, **run(a.model, w, a.clients, a.requests, d)} for d in a.detectors for w in a.workers]
    print(f"{a.clients} clients x {a.requests} requests, one 512x512 photo each")
    print("| detector | workers | requests | errors | p50 | p99 | throughput (x first row) | /health worst "
          "| peak memory |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['detector']} | {r['workers']} | {r['requests']} | {r['errors']} | {r['p50_ms']} ms | "
              f"{r['p99_ms']} ms | "
              f"{r['requests_per_s']}/s ({r['requests_per_s'] / rows[0]['requests_per_s']:.2f}x) | "
              f"{r['health_max_ms']} ms | {r['peak_rss_mb']} MB |")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))
    record(a, "serve_load", [table(
        f"{a.clients} clients x {a.requests} requests, one 512x512 photo each",
        ["detector", "workers", "requests", "errors", "p50 ms", "p99 ms", "photos/s", "x first row",
         "/health worst ms", "peak memory MB"],
        [[r["detector"], r["workers"], r["requests"], r["errors"], r["p50_ms"], r["p99_ms"], r["requests_per_s"],
          round(r["requests_per_s"] / rows[0]["requests_per_s"], 2), r["health_max_ms"], r["peak_rss_mb"]]
         for r in rows])])


if __name__ == "__main__":
    main()
