"""Emotions over time in a video: ``fer predict clip.mp4``.

Frames are sampled at ``predict.video_fps``; every face in a sampled frame goes through the photo
path (``predict.analyse``: detect, crop, classify) and is **followed across samples** by the
overlap of its box with the boxes of the samples before (``TRACK_MIN_IOU``; a face unseen for
more than ``TRACK_MAX_GAP`` samples ends its track, so one that leaves and comes back may get a
new one). Each track's label is also given **smoothed**: the mean of its last
``predict.smooth_frames`` samples' probabilities, so it does not flicker from frame to frame; the
raw per-sample values stay beside it.

Writes, into one folder per video: ``timeline.jsonl`` (a line per face per sample), ``timeline.csv``
(the same, flat), ``timeline.png`` (each track's emotions over time) and ``summary.json`` (per
track: the dominant emotion, its share of the track's time, the moments the smoothed label
changed); optionally the video annotated. A video that cannot be opened is one line; one damaged
part-way keeps what was read before the damage, and says where it stopped.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import FerError
from .labels import LABELS

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
TRACK_MIN_IOU = 0.3   # a face continues a track when its box overlaps the track's last box this much
TRACK_MAX_GAP = 2     # samples a track may miss its face and still continue


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    id: int
    last_box: list
    last_sample: int
    recent: list = field(default_factory=list)   # the last smooth_frames probability vectors


class Tracker:
    """Greedy box-overlap matching of each sample's faces to the open tracks, best overlap first."""

    def __init__(self, smooth_frames: int):
        self.smooth_frames, self.tracks, self.next_id = smooth_frames, [], 1

    def update(self, sample: int, faces: list[dict]) -> list[tuple[Track, dict]]:
        open_tracks = [t for t in self.tracks if sample - t.last_sample <= TRACK_MAX_GAP + 1]
        pairs = sorted(((iou(t.last_box, f["box"]), ti, fi) for ti, t in enumerate(open_tracks)
                        for fi, f in enumerate(faces)), reverse=True)
        taken_t, taken_f, out = set(), set(), {}
        for overlap, ti, fi in pairs:
            if overlap < TRACK_MIN_IOU or ti in taken_t or fi in taken_f:
                continue
            taken_t.add(ti), taken_f.add(fi)
            out[fi] = open_tracks[ti]
        for fi in range(len(faces)):
            if fi not in out:
                out[fi] = Track(self.next_id, faces[fi]["box"], sample)
                self.next_id += 1
                self.tracks.append(out[fi])
        result = []
        for fi, face in enumerate(faces):
            t = out[fi]
            t.last_box, t.last_sample = face["box"], sample
            t.recent = (t.recent + [np.array([face["probabilities"][k] for k in LABELS])])[-self.smooth_frames:]
            result.append((t, face))
        return result


def sample_frames(path: str, fps: float):
    """``(sample index, time s, BGR frame)`` at about ``fps`` per second; then, once exhausted, a
    final ``(None, stats, None)`` whose stats say how far the file was read and whether it ended
    early. Frames between samples are grabbed, not decoded."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FerError(f"{path}: not a video OpenCV can read (a damaged file, or a codec this OpenCV lacks)")
    native = cap.get(cv2.CAP_PROP_FPS) or 0.0
    native = native if 0 < native < 1000 else 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    frame, sample = 0, 0
    try:
        while True:
            if frame / native + 1e-9 >= sample / fps:   # this frame is the next sample's
                ok, img = cap.read()
                if not ok or img is None:
                    break
                yield sample, frame / native, img
                sample += 1
            elif not cap.grab():
                break
            frame += 1
    finally:
        cap.release()
    yield None, {"frames_read": frame, "frames_declared": total, "native_fps": native,
                 "seconds_read": round(frame / native, 3)}, None


def summarize(rows: list[dict]) -> list[dict]:
    """Per track: samples, first and last time, the dominant (smoothed) emotion and its share of the
    track's samples, and the moments the smoothed label changed."""
    out = []
    for tid in sorted({r["track"] for r in rows}):
        mine = [r for r in rows if r["track"] == tid]
        labels = [r["smoothed_label"] for r in mine]
        counts = {k: labels.count(k) for k in LABELS if k in labels}
        dominant = max(counts, key=counts.get)
        changes = [{"time": r["time"], "from": a, "to": r["smoothed_label"]}
                   for a, r in zip(labels, mine[1:]) if r["smoothed_label"] != a]
        out.append({"track": tid, "samples": len(mine), "start": mine[0]["time"], "end": mine[-1]["time"],
                    "dominant": dominant, "dominant_share": round(counts[dominant] / len(mine), 4),
                    "changes": changes})
    return out


def analyse_video(path: str, predictor, detector, settings: dict, out_dir: str | Path | None = None,
                  annotate: str | Path | None = None, progress: bool = True) -> dict:
    """The timeline of ``path`` (module docstring); writes its files into ``out_dir`` when given.
    Returns ``{"file", "samples", "faces", "tracks" (summary), "seconds" per stage, "read"}``."""
    import time

    from tqdm import tqdm

    from .predict import analyse

    fps, smooth = float(settings["video_fps"]), int(settings["smooth_frames"])
    tracker, rows, seconds, writer = Tracker(smooth), [], {"decode": 0.0}, None
    stats = {}
    frames = sample_frames(path, fps)
    t_prev = time.perf_counter()
    import cv2

    probe = cv2.VideoCapture(str(path))
    expected = int(probe.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    native = probe.get(cv2.CAP_PROP_FPS) or 25.0
    probe.release()
    expected_samples = math.ceil(expected / max(native, 1e-6) * fps - 1e-9) if expected > 0 else None
    bar = tqdm(total=expected_samples, desc=Path(path).name, unit="frame", disable=not progress, file=sys.stderr)
    for sample, when, img in frames:
        if sample is None:
            stats = when
            break
        seconds["decode"] += time.perf_counter() - t_prev
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        (res,) = analyse([(f"{when:.3f}", gray)], predictor, detector, settings["margin"],
                         min_confidence=settings["min_confidence"], seconds=seconds)
        for track, face in tracker.update(sample, res.faces):
            mean = np.mean(track.recent, axis=0)
            rows.append({"time": round(when, 3), "sample": sample, "track": track.id, **face,
                         "smoothed_label": LABELS[int(mean.argmax())],
                         "smoothed_probabilities": {k: round(float(v), 4) for k, v in zip(LABELS, mean)}})
        if annotate:
            writer = writer or _video_writer(annotate, path, fps, img.shape)
            writer.write(_draw(img, [r for r in rows if r["sample"] == sample]))
        bar.update(1)
        t_prev = time.perf_counter()
    bar.close()
    if writer is not None:
        writer.release()
    if not rows and not stats.get("frames_read"):
        raise FerError(f"{path}: no frame could be read (a damaged file, or a codec this OpenCV lacks)")
    declared = stats.get("frames_declared", 0)
    read_all = not declared or stats["frames_read"] >= declared - 1
    if not read_all:
        print(f"warning: {path}: stopped at {stats['seconds_read']:.1f} s (frame {stats['frames_read']} of "
              f"{declared}): the file is damaged or cut short; the timeline covers what was read", file=sys.stderr)
    result = {"file": str(path), "samples": sum(1 for _ in {r["sample"] for r in rows}) if rows else 0,
              "faces": len(rows), "tracks": summarize(rows), "read": {**stats, "complete": read_all},
              "seconds": {k: round(v, 3) for k, v in seconds.items()}, "model": predictor.info}
    if out_dir is not None:
        write_timeline(Path(out_dir), rows, result)
    return result


def _video_writer(annotate, path, fps, shape):
    import cv2

    out = Path(annotate) / (Path(path).name.replace(".", "_") + ".mp4")
    out.parent.mkdir(parents=True, exist_ok=True)
    return cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (shape[1], shape[0]))


def _draw(img: np.ndarray, faces: list[dict]) -> np.ndarray:
    import cv2

    img = img.copy()
    for f in faces:
        x, y, w, h = f["box"]
        cv2.rectangle(img, (x, y), (x + w, y + h), (0, 200, 0), 2)
        cv2.putText(img, f"{f['track']}: {f['smoothed_label']}", (x, max(15, y - 6)), cv2.FONT_HERSHEY_SIMPLEX,
                    max(0.5, w / 200), (0, 200, 0), 2)
    return img


COLUMNS = ["time", "sample", "track", "x", "y", "w", "h", "label", "score", "uncertain", "smoothed_label",
           *[f"p_{k}" for k in LABELS]]


def write_timeline(out: Path, rows: list[dict], result: dict) -> None:
    """timeline.jsonl, timeline.csv, timeline.png and summary.json in ``out`` (each written whole)."""
    from . import plots
    from .fsutil import atomic_path, write_json, write_text

    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "timeline.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    with atomic_path(out / "timeline.csv") as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([r["time"], r["sample"], r["track"], *r["box"], r["label"], r["score"], r.get("uncertain", ""),
                        r["smoothed_label"], *[r["probabilities"][k] for k in LABELS]])
    times, probs = {}, {}
    for t in {r["track"] for r in rows}:
        mine = [r for r in rows if r["track"] == t]
        times[t] = np.array([r["time"] for r in mine])
        probs[t] = np.array([[r["smoothed_probabilities"][k] for k in LABELS] for r in mine])
    plots.publish(plots.timeline(times, probs, Path(result["file"]).name), out / "timeline.png")
    write_json(out / "summary.json", result)


def run_videos(files: list[str], predictor, detector, settings: dict, timeline_root: str | None,
               annotate: str | None, out) -> int:
    """``fer predict`` on video files: a timeline folder per video and its summary as a JSON line on
    ``out``; returns how many videos were read."""
    read = 0
    for f in files:
        folder = Path(timeline_root or "timelines") / Path(f).name.replace(".", "_")
        try:
            r = analyse_video(f, predictor, detector, settings, folder, annotate)
        except FerError as exc:
            print(f"skipped {exc}", file=sys.stderr)
            continue
        read += 1
        out.write(json.dumps({"file": f, "timeline": str(folder), "samples": r["samples"], "tracks": r["tracks"],
                              "complete": r["read"]["complete"], "model": r["model"]}) + "\n")
        print(f"{f}: {r['samples']} frames sampled, {len(r['tracks'])} face tracks; timeline in {folder}/",
              file=sys.stderr)
    return read
