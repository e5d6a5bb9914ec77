"""The ``fer predict`` command: photos give a JSON line each (``predict``: decode, detect, crop,
classify), videos a timeline folder each (``video``); folders are searched for both."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path

from .errors import FerError
from .faces import make_detector
from .predict import IMAGE_SUFFIXES, add_photo_arguments, analyse, annotate, read_image
from .predictor import load_predictor
from .settings import photo_settings
from .video import VIDEO_SUFFIXES, is_video, run_videos


def collect_files(inputs: Iterable[str]) -> tuple[list[str], bool]:
    """Files named directly (any) plus image and video files found in folders; whether a folder was given."""
    files, had_folder = [], False
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            had_folder = True
            files += sorted(str(f) for f in p.rglob("*")
                            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        else:
            files.append(str(p))
    return files, had_folder


def run_predict(inputs: list[str], model: str | None, output: str | None, annotate_dir: str | None,
                settings: dict, batch_images: int = 32, timeline: str | None = None) -> int:
    """The ``fer predict`` command (``settings``: ``photo_settings``); photos give a JSON line each,
    videos a timeline folder each (``video``). Returns the exit status (1 only if nothing could be read)."""
    from tqdm import tqdm

    files, had_folder = collect_files(inputs)
    if not files:
        raise FerError("no input images or videos found")
    videos = [f for f in files if is_video(f)]
    files = [f for f in files if not is_video(f)]
    predictor = load_predictor(model)
    found = make_detector(settings["detector"], settings)
    margin, min_confidence = settings["margin"], settings["min_confidence"]
    read_ok = 0
    with (open(output, "w") if output else contextlib.nullcontext(sys.stdout)) as out:
        if videos:
            read_ok += run_videos(videos, predictor, found, settings, timeline, annotate_dir, out)
        bar = tqdm(total=len(files), desc="photos", unit="img", disable=not had_folder or not files,
                   file=sys.stderr)
        for i in range(0, len(files), batch_images):
            chunk = []
            for f in files[i:i + batch_images]:
                gray = read_image(f)
                if gray is None:
                    print(f"skipped {f}: not a readable image", file=sys.stderr)
                else:
                    chunk.append((f, gray))
            read_ok += len(chunk)
            for res in analyse(chunk, predictor, found, margin, min_confidence=min_confidence):
                if not res.faces:
                    print(f"no face found in {res.file}", file=sys.stderr)
                out.write(json.dumps({**res.to_dict(), "model": predictor.info}) + "\n")
                if annotate_dir:
                    annotate(res.file, res, annotate_dir)
            bar.update(len(files[i:i + batch_images]))
        bar.close()
    if not read_ok:
        print("error: none of the inputs could be read as an image or a video", file=sys.stderr)
        return 1
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="emotions of the faces in photos (JSON lines) and videos (timelines)")
    p.add_argument("inputs", nargs="+", help="image and video files and/or folders")
    p.add_argument("--model", help="a .keras/.tflite file or an MLflow URI such as models:/fer-emotion@champion "
                                   "(default: the registry champion, else the workspace's models/model.keras, "
                                   "else the shipped model)")
    p.add_argument("--output", "-o", help="write JSON lines here instead of stdout")
    p.add_argument("--annotate", metavar="DIR", help="also write annotated copies of the photos and videos into DIR")
    p.add_argument("--timeline", metavar="DIR", help="videos: each one's timeline goes into DIR/<name>/ "
                                                      "(default: timelines/)")
    add_photo_arguments(p)

    def func(args):
        s = photo_settings(args.detector, args.margin, args.min_confidence)
        code = run_predict(args.inputs, args.model, args.output, args.annotate, s, timeline=args.timeline)
        if code:
            sys.exit(code)

    p.set_defaults(func=func)
