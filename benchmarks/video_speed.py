"""A video's whole timeline, stage by stage: ``fer predict clip.mp4`` on a clip written here.

    python benchmarks/video_speed.py [--model M] [--seconds 30] [--fps 25] [--detector yunet] [--repeat 2]

The clip is 640x480 (mp4v), the astronaut's face moving across it with a second face from half
way; it is read at params.yaml's ``predict.video_fps`` and smoothed over ``predict.smooth_frames``
exactly as ``fer predict`` does (``video.analyse_video``). Prints, per run, the wall time of the
whole timeline (files written) and the time in each stage: decode (reading and sampling frames),
detect, crop, classify.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from records import add_argument, record, table


def write_clip(path: Path, seconds: float, fps: int) -> Path:
    import cv2
    from skimage import data

    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)[40:220, 130:310]
    frames = int(seconds * fps)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    for i in range(frames):
        img = np.full((480, 640), 90, np.uint8)
        x = int(20 + 400 * i / frames)
        img[60:240, x:x + 180] = face
        if i >= frames // 2:
            img[280:460, 440:620] = face[:, ::-1]
        out.write(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    out.release()
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="default: as fer predict chooses (champion, workspace, shipped)")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--detector", default=None, help="default: params.yaml's predict.detector")
    ap.add_argument("--repeat", type=int, default=2)
    add_argument(ap)
    a = ap.parse_args()

    from fer_pipeline.faces import make_detector
    from fer_pipeline.predictor import load_predictor
    from fer_pipeline.settings import photo_settings
    from fer_pipeline.video import analyse_video

    settings = photo_settings(a.detector)
    predictor = load_predictor(a.model)
    detector = make_detector(settings["detector"], settings)
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_clip(Path(tmp) / "clip.mp4", a.seconds, a.fps)
        title = (f"{a.seconds:.0f} s 640x480 clip at {a.fps} fps, sampled at {settings['video_fps']} per second, "
                 f"detector {settings['detector']}, model {predictor.spec}")
        print(title)
        rows = []
        print("| run | samples | faces | tracks | total | decode | detect | crop | classify |")
        print("|---|---|---|---|---|---|---|---|---|")
        for k in range(a.repeat):
            t0 = time.perf_counter()
            r = analyse_video(str(clip), predictor, detector, settings, Path(tmp) / f"out{k}", progress=False)
            total = time.perf_counter() - t0
            s = r["seconds"]
            print(f"| {k + 1} | {r['samples']} | {r['faces']} | {len(r['tracks'])} | {total:.2f} s | "
                  + " | ".join(f"{s.get(x, 0):.2f} s" for x in ("decode", "detect", "crop", "classify")) + " |")
            rows.append([k + 1, r["samples"], r["faces"], len(r["tracks"]), round(total, 2),
                         *(round(s.get(x, 0), 2) for x in ("decode", "detect", "crop", "classify"))])
    record(a, "video_speed", [table(title + " (seconds)", ["run", "samples", "faces", "tracks", "total", "decode",
                                                            "detect", "crop", "classify"], rows)])


if __name__ == "__main__":
    main()
