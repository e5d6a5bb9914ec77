"""Videos: ``fer predict clip.avi`` on clips written here with OpenCV's VideoWriter (the astronaut's
face moving across the frame, a second face appearing halfway), a clip cut short, a file that is
not a video, and the smoothing of each track's label."""

import csv
import json

import numpy as np
import pytest

from fer_pipeline.labels import LABELS
from fer_pipeline.video import Tracker, iou

from helpers import astronaut_gray, fer_cli, tiny_model_file

FRAMES, FPS = 40, 10   # a 4 s clip; fer predict samples it at params.yaml's predict.video_fps (5)


def write_clip(path, frames: int = FRAMES):
    import cv2

    face = astronaut_gray()[40:220, 130:310]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (640, 480))
    for i in range(frames):
        img = np.full((480, 640), 90, np.uint8)
        img[60:240, 20 + 6 * i:200 + 6 * i] = face                # moves right, 6 px a frame
        if i >= frames // 2:
            img[270:450, 420:600] = face[:, ::-1]                 # a second face from 2.0 s on
        out.write(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    out.release()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("video")
    return {"clip": write_clip(d / "clip.avi"), "model": tiny_model_file(d / "tiny.keras"), "dir": d}


def test_a_clip_gives_one_track_per_face_with_the_right_samples_and_its_files(clip, tmp_path):
    r = fer_cli("predict", str(clip["clip"]), "--model", str(clip["model"]), "--timeline", str(tmp_path),
                "--annotate", str(tmp_path / "annotated"))
    assert r.returncode == 0, r.stderr
    (line,) = [json.loads(x) for x in r.stdout.splitlines()]
    tracks = {t["track"]: t for t in line["tracks"]}
    assert line["samples"] == 20 and line["complete"] and len(tracks) == 2      # 4 s at 5 samples a second
    assert (tracks[1]["samples"], tracks[1]["start"], tracks[1]["end"]) == (20, 0.0, 3.8)
    assert (tracks[2]["samples"], tracks[2]["start"], tracks[2]["end"]) == (10, 2.0, 3.8)
    folder = tmp_path / "clip_avi"
    rows = [json.loads(x) for x in (folder / "timeline.jsonl").read_text().splitlines()]
    assert len(rows) == 30 and {r["track"] for r in rows} == {1, 2}
    first = [r for r in rows if r["track"] == 1]
    assert first[-1]["box"][0] > first[0]["box"][0] + 100                          # it followed the face
    for row in rows:   # raw and smoothed values side by side
        assert set(row["probabilities"]) == set(row["smoothed_probabilities"]) == set(LABELS)
        assert {"time", "track", "box", "label", "uncertain", "smoothed_label"} <= set(row)
    with open(folder / "timeline.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 30
    assert (folder / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((folder / "summary.json").read_text())["tracks"] == line["tracks"]
    assert (tmp_path / "annotated" / "clip_avi.mp4").stat().st_size > 1000


def test_a_clip_cut_short_keeps_the_frames_before_the_damage_and_says_so_in_one_line(clip, tmp_path):
    data = clip["clip"].read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:int(len(data) * 0.6)])
    r = fer_cli("predict", str(cut), "--model", str(clip["model"]), "--timeline", str(tmp_path))
    assert r.returncode == 0, r.stderr
    (line,) = [json.loads(x) for x in r.stdout.splitlines()]
    assert not line["complete"] and 5 <= line["samples"] < 20
    warning = [x for x in r.stderr.splitlines() if x.startswith("warning: ")]
    assert len(warning) == 1 and "cut short" in warning[0] and f"of {FRAMES})" in warning[0]
    assert len((tmp_path / "cut_avi" / "timeline.jsonl").read_text().splitlines()) >= line["samples"]


def test_a_file_that_is_not_a_video_is_one_line_and_exit_status_1(clip, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    r = fer_cli("predict", str(junk), "--model", str(clip["model"]), "--timeline", str(tmp_path))
    assert r.returncode == 1
    assert "skipped " in r.stderr and "not a video OpenCV can read" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "error: none of the inputs could be read as an image or a video"


def test_the_smoothed_label_does_not_flicker_where_the_raw_one_does():
    tracker = Tracker(smooth_frames=3)
    happy, sad = LABELS.index("happy"), LABELS.index("sad")
    raw, smoothed = [], []
    for i in range(8):   # happy most of the time, one sample in three sad
        p = np.full(7, 0.02)
        p[sad if i % 3 == 2 else happy] = 0.55
        p[happy if i % 3 == 2 else sad] = 0.33
        face = {"box": [100 + i, 100, 80, 80], "probabilities": dict(zip(LABELS, p))}
        ((track, _),) = tracker.update(i, [face])
        raw.append(int(np.argmax(p)))
        smoothed.append(int(np.mean(track.recent, axis=0).argmax()))
    assert len(set(raw)) == 2 and set(smoothed) == {happy} and track.id == 1


def test_a_face_that_leaves_for_long_comes_back_as_a_new_track():
    tracker = Tracker(smooth_frames=2)
    face = {"box": [0, 0, 50, 50], "probabilities": dict.fromkeys(LABELS, 1 / 7)}
    ((a, _),) = tracker.update(0, [face])
    ((b, _),) = tracker.update(2, [face])          # missed one sample: the same track
    ((c, _),) = tracker.update(7, [face])          # gone for four: a new one
    assert a.id == b.id == 1 and c.id == 2
    assert iou([0, 0, 10, 10], [5, 0, 10, 10]) == pytest.approx(1 / 3)


def test_evaluate_photos_scores_a_video_in_a_class_folder_by_its_dominant_emotion(clip, tmp_path):
    import shutil

    from fer_pipeline.faces import make_detector
    from fer_pipeline.photo_eval import evaluate_photos
    from fer_pipeline.predictor import Predictor

    def constant(label):
        p = np.full(7, 0.01)
        p[LABELS.index(label)] = 0.94
        return Predictor(label, "test", lambda x: np.tile(p, (len(x), 1)))

    (tmp_path / "happy").mkdir()
    (tmp_path / "sad").mkdir()
    shutil.copy(clip["clip"], tmp_path / "happy" / "laughing.avi")
    shutil.copy(clip["clip"], tmp_path / "sad" / "crying.avi")
    (tmp_path / "sad" / "broken.avi").write_bytes(b"no video here" * 50)
    r = evaluate_photos(tmp_path, constant("happy"), make_detector("yunet"), 0.1, 0.4, progress=False)
    assert r["images"] == 2 and r["faces_found"] == 2 and r["accuracy"] == 0.5
    assert r["recall"] == {"happy": 1.0, "sad": 0.0} and r["photos_with_several_faces"] == 2   # two tracks each
    assert r["skipped"]["unreadable"]["examples"] == ["sad/broken.avi"]
