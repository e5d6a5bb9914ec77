"""The photo service's Prometheus metrics (``GET /metrics``), from ``prometheus-client``.

With several worker processes (``fer serve --workers N``) each process writes its samples to
``PROMETHEUS_MULTIPROC_DIR`` (set by ``fer serve`` before the workers start) and ``/metrics``
merges them (the client's multiprocess mode), so counts are those of the whole service whichever
worker answers the scrape.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

REQUESTS = Counter("fer_http_requests_total", "HTTP requests by route and status", ["route", "status"])
LATENCY = Histogram("fer_http_request_seconds", "Request latency by route", ["route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
PHOTOS = Histogram("fer_photos_per_request", "Photos per /predict request", buckets=(1, 2, 3, 5, 10, 20))
FACES = Histogram("fer_faces_per_photo", "Faces found per photo", buckets=(0, 1, 2, 3, 5, 10, 20))
EMOTIONS = Counter("fer_faces_total", "Classified faces by predicted emotion", ["emotion"])
TOP_PROBABILITY = Histogram("fer_top_probability", "The predicted emotion's probability per face",
                            buckets=(0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0))
NO_FACE = Counter("fer_photos_without_face_total", "Photos in which no face was found")
FRAMES = Counter("fer_frames_total", "Video frames analysed: live camera frames (POST /frame) and sampled video frames")
REFUSED = Counter("fer_uploads_refused_total", "Uploads refused, by reason", ["reason"])
REFUSAL_REASONS = ("size", "pixels", "type", "count")


def observe_photos(photos: list[dict]) -> None:
    PHOTOS.observe(len(photos))
    for photo in photos:
        FACES.observe(len(photo["faces"]))
        if not photo["faces"]:
            NO_FACE.inc()
        for face in photo["faces"]:
            EMOTIONS.labels(face["label"]).inc()
            TOP_PROBABILITY.observe(face["score"])


def exposition() -> bytes:
    """The metrics in the Prometheus text format: this process's, or all workers' merged."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY)
