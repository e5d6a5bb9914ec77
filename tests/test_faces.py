"""Face detectors and aligned crops on real photos (scikit-image's astronaut; nothing shipped), and
``fer evaluate-photos`` on a tiny labelled folder made here."""

import json

import cv2
import numpy as np
import pytest

from fer_pipeline.errors import FerError
from fer_pipeline.faces import (
    DETECTOR_NAMES,
    LANDMARKS,
    TEMPLATE,
    TEMPLATES,
    YUNET_FILE,
    YUNET_TURNS,
    HaarFaceDetector,
    MtcnnFaceDetector,
    WholeImageIfNone,
    YuNetFaceDetector,
    align_face,
    eye_angle,
    face_crop,
    make_detector,
)
from fer_pipeline.labels import LABELS
from fer_pipeline.predictor import Predictor

from conftest import REPO
from helpers import astronaut_gray, repo_params, write_png


@pytest.fixture(scope="module")
def mtcnn():
    return MtcnnFaceDetector()


def mtcnn_with(**settings) -> MtcnnFaceDetector:
    """MTCNN with other settings, made as the round trip makes its variants: a subclass."""
    return type("MtcnnVariant", (MtcnnFaceDetector,), settings)()


@pytest.fixture(scope="module")
def yunet():
    return make_detector("yunet", repo_params()["predict"])


def rotated(img: np.ndarray, angle: float) -> np.ndarray:
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def test_mtcnn_finds_the_astronaut_with_five_landmarks_in_place(mtcnn):
    (face,) = mtcnn.detect(astronaut_gray())
    x, y, w, h = face.box
    assert abs(x + w / 2 - 224) < 15 and abs(y + h / 2 - 118) < 20       # Haar's box centre: (224, 113)
    (lx, ly), (rx, ry) = face.landmarks["left_eye"], face.landmarks["right_eye"]
    assert lx < rx and abs(ly - ry) < 6 and y < ly < face.landmarks["nose"][1] < face.landmarks["mouth_left"][1]


@pytest.mark.parametrize("angle", [-18, 15])
def test_a_rotated_face_comes_back_upright(mtcnn, angle):
    photo = rotated(astronaut_gray(), angle)
    (face,) = mtcnn.detect(photo)
    assert abs(eye_angle(face.landmarks)) > 8          # the photo's face is visibly turned
    crop = align_face(photo, face.landmarks)
    assert crop.shape == (48, 48)
    # look again, on the crop itself: its eye line is level, its eyes where FER2013's are
    (again,) = mtcnn.detect(cv2.resize(crop, (192, 192), interpolation=cv2.INTER_CUBIC))
    assert abs(eye_angle(again.landmarks)) < 3
    for k in ("left_eye", "right_eye"):
        got = np.array(again.landmarks[k]) / 4
        assert np.hypot(*(got - TEMPLATE[k])) < 3, (k, got, TEMPLATE[k])


def test_a_face_turned_past_the_upright_pass_is_found_by_the_turned_search(mtcnn):
    angle = -50
    photo = rotated(astronaut_gray(), angle)
    assert mtcnn_with(retry_angles=(), retry_views=()).detect(photo) == []   # the upright pass alone misses it
    (face,) = mtcnn.detect(photo)
    m = cv2.getRotationMatrix2D((256, 256), angle, 1.0)                  # where the astronaut's face went
    cx, cy = m @ np.array([224.0, 118.0, 1.0])
    x, y, w, h = face.box
    assert abs(x + w / 2 - cx) < 20 and abs(y + h / 2 - cy) < 20, (face.box, cx, cy)
    assert abs(eye_angle(face.landmarks)) > 40                           # landmarks in the photo's frame...
    crop = align_face(photo, face.landmarks)                             # ...so the crop comes back upright
    (again,) = mtcnn.detect(cv2.resize(crop, (192, 192), interpolation=cv2.INTER_CUBIC))
    assert abs(eye_angle(again.landmarks)) < 3


@pytest.mark.parametrize("mode,upright_faces", [("always", 1), ("unless_one", 2)])
def test_a_turned_face_beside_upright_ones_is_found_by_the_turned_search_of_that_mode(mode, upright_faces):
    astro = astronaut_gray()
    photo = np.concatenate([astro] * upright_faces + [rotated(astro, -50)], axis=1)   # the turned one last
    # if_none: the upright pass found faces, so no turned search
    assert len(mtcnn_with(turned_search="if_none").detect(photo)) == upright_faces
    faces = mtcnn_with(turned_search=mode).detect(photo)
    assert len(faces) == upright_faces + 1             # each upright face once, not again from a turned pass
    assert sorted(f.box[0] // 512 for f in faces) == list(range(upright_faces + 1))


def test_the_default_does_not_search_a_photo_with_one_upright_face_turned(mtcnn):
    astro = astronaut_gray()
    photo = np.concatenate([astro, rotated(astro, -50)], axis=1)
    assert mtcnn.turned_search == "unless_one" and len(mtcnn.detect(photo)) == 1   # one pass, not three


def test_a_face_that_fills_the_whole_image_is_found(mtcnn):
    astro = astronaut_gray()
    tight = astro[75:180, 180:270]                 # forehead to chin, cheek to cheek: no margin at all
    for scale in (1, 4):
        img = cv2.resize(tight, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        faces = mtcnn.detect(img)
        assert len(faces) == 1, scale
        x, y, w, h = faces[0].box
        assert w > 0.6 * img.shape[1]               # it is the whole image, not a part of it


def test_yunet_the_default_finds_the_astronaut_with_five_landmarks_in_place(yunet):
    assert repo_params()["predict"]["detector"] == "yunet" and isinstance(yunet, YuNetFaceDetector)
    (face,) = yunet.detect(astronaut_gray())
    x, y, w, h = face.box
    assert abs(x + w / 2 - 224) < 15 and abs(y + h / 2 - 118) < 20       # where MTCNN and Haar put it
    (lx, ly), (rx, ry) = face.landmarks["left_eye"], face.landmarks["right_eye"]
    assert lx < rx and abs(ly - ry) < 6 and y < ly < face.landmarks["nose"][1] < face.landmarks["mouth_left"][1]
    assert face.landmarks["mouth_left"][0] < face.landmarks["mouth_right"][0] and face.detector == "yunet"


@pytest.mark.parametrize("angle", [-30, 20])
def test_yunet_s_turned_views_level_a_turned_face_where_its_template_says(yunet, angle):
    turned = type("Turned", (YuNetFaceDetector,), {"turns": YUNET_TURNS})(0.6, 192)
    photo = rotated(astronaut_gray(), angle)
    (face,) = turned.detect(photo)
    assert abs(eye_angle(face.landmarks)) > 12                           # turned in the photo...
    crop = face_crop(photo, face)
    (again,) = turned.detect(cv2.resize(crop, (192, 192), interpolation=cv2.INTER_CUBIC))
    assert abs(eye_angle(again.landmarks)) < 8                           # ...level in the crop, to within
    off = [np.hypot(*(np.array(again.landmarks[k]) / 4 - TEMPLATES["yunet"][k]))   # half the step of YUNET_TURNS;
           for k in ("left_eye", "right_eye", "mouth_left", "mouth_right")]        # each landmark near its place
    assert np.mean(off) < 3.5 and max(off) < 4.5, off
    # without them (the default: they did not pay on the round trip), the crop stays turned
    (plain,) = yunet.detect(photo)
    (again,) = turned.detect(cv2.resize(face_crop(photo, plain), (192, 192), interpolation=cv2.INTER_CUBIC))
    assert yunet.turns == () and abs(eye_angle(again.landmarks)) > 12
    # each detector's landmarks map onto its own template: YuNet's mouth sits higher than MTCNN's
    assert TEMPLATES["yunet"]["mouth_left"][1] < TEMPLATES["mtcnn"]["mouth_left"][1] - 0.5


def test_yunet_finds_a_face_that_fills_the_whole_image_and_a_small_one(yunet):
    astro = astronaut_gray()
    for img in (astro[90:165, 190:260], astro[75:180, 180:270]):   # cut inside the outline; cheek to cheek
        (face,) = yunet.detect(img)
        assert face.box[2] > 0.6 * img.shape[1]
    photo = np.full((400, 400), 120, np.uint8)
    photo[150:246, 100:196] = cv2.resize(astro, (96, 96), interpolation=cv2.INTER_AREA)   # a face of 20 px
    assert YuNetFaceDetector(0.6, 0).detect(photo) == []                  # missed at its own size...
    (face,) = yunet.detect(photo)                                         # ...found upscaled to detector_min_side
    assert abs(face.box[0] + face.box[2] / 2 - 142) < 5 and repo_params()["predict"]["detector_min_side"] > 400


@pytest.mark.parametrize("damage", ["missing", "truncated", "changed"])
def test_a_missing_or_damaged_detector_file_is_one_line(tmp_path, damage):
    bad = tmp_path / YUNET_FILE.name
    if damage == "truncated":
        bad.write_bytes(YUNET_FILE.read_bytes()[:1000])
    elif damage == "changed":
        data = bytearray(YUNET_FILE.read_bytes())
        data[5000] ^= 0xFF
        bad.write_bytes(bytes(data))
    word = "missing" if damage == "missing" else "damaged"
    with pytest.raises(FerError, match=f"^the YuNet face detector file is {word}: .*reinstall the package"):
        YuNetFaceDetector(0.6, 192, model_file=bad)


def test_a_face_cut_at_the_brows_and_chin_is_found_in_a_flat_grey_frame(mtcnn):
    # tighter than the test above: cut inside the face's outline, the face touches every border;
    # padded with its edge pixels repeated, MTCNN finds nothing (the streaks hide it), in a flat
    # frame of the image's mean grey (faces.PAD_FILLS' default) it finds the face
    tight = astronaut_gray()[90:165, 190:260]
    assert mtcnn_with(pad_fill="edge").detect(tight) == []
    (face,) = mtcnn.detect(tight)
    x, y, w, h = face.box
    assert abs(x + w / 2 - 35) < 12 and abs(y + h / 2 - 35) < 15, face.box     # the middle of the crop


def test_a_faint_face_that_mtcnn_s_own_stage_thresholds_never_propose_is_found(mtcnn):
    # the astronaut at a sixth of its contrast (a dim, hazy photo): MTCNN with its package's PNet
    # and RNet thresholds (0.6, 0.7) proposes nothing; ours (faces.MTCNN_STAGE_THRESHOLDS) do, and
    # the last stage still scores the face above min_confidence
    faint = np.clip(127 + (astronaut_gray().astype(float) - 127) * 0.16, 0, 255).astype(np.uint8)
    assert mtcnn_with(retry_angles=(), retry_views=(), stage_thresholds=(0.6, 0.7)).detect(faint) == []
    (face,) = mtcnn.detect(faint)
    x, y, w, h = face.box
    assert abs(x + w / 2 - 224) < 15 and abs(y + h / 2 - 118) < 20 and face.score >= mtcnn.min_confidence


def test_a_dim_underexposed_face_is_found_by_the_equalized_view():
    # the astronaut at 7% of its contrast around dark grey: no upright pass, turn or mirror (the
    # default) finds it; the equalized view, asked for, does, and the face is where the photo has it
    dim = np.clip(40 + (astronaut_gray().astype(float) - 127) * 0.07, 0, 255).astype(np.uint8)
    assert MtcnnFaceDetector().detect(dim) == []
    (face,) = mtcnn_with(retry_views=("mirrored", "equalized")).detect(dim)
    x, y, w, h = face.box
    assert abs(x + w / 2 - 224) < 15 and abs(y + h / 2 - 118) < 20


def test_the_mirrored_view_gives_faces_in_the_photo_s_own_frame(mtcnn):
    # the astronaut's face sits left of the middle, so a box or landmark not mirrored back lands
    # on the other side; the image's left eye must stay the image's left eye
    assert mtcnn.retry_views == ("mirrored",)      # the default searches the mirror again
    photo = astronaut_gray()
    (upright,) = mtcnn._detect_upright(photo)
    (mirrored,) = mtcnn._detect_view(photo, "mirrored")
    assert np.allclose(mirrored.box[:2], upright.box[:2], atol=8), (mirrored.box, upright.box)
    for k in LANDMARKS:
        assert np.hypot(*np.subtract(mirrored.landmarks[k], upright.landmarks[k])) < 5, k
    assert abs(eye_angle(mirrored.landmarks)) < 10


@pytest.mark.parametrize("detector", ["haar", "mtcnn", "yunet"])
def test_a_photo_without_a_face_gives_no_face_and_no_error(detector, mtcnn, yunet):
    from skimage import data

    det = {"mtcnn": mtcnn, "yunet": yunet}.get(detector) or HaarFaceDetector()
    for img in (data.brick(), np.full((300, 400), 127, np.uint8), np.zeros((5, 5), np.uint8)):
        assert det.detect(img) == []


def test_face_crops_are_read_whole_where_the_detector_finds_no_face(mtcnn):
    from skimage import data

    from fer_pipeline.predict import analyse

    brick, astro = data.brick(), astronaut_gray()
    either = WholeImageIfNone(mtcnn)
    assert either.name == "mtcnn+whole"
    (face,) = either.detect(astro)                  # found: MTCNN's own face, aligned
    assert not face.whole_image and face.landmarks and face.box == mtcnn.detect(astro)[0].box
    (whole,) = either.detect(brick)                 # none found: the whole image is the face
    assert whole.whole_image and whole.box == (0, 0, brick.shape[1], brick.shape[0])
    (every,) = make_detector("whole").detect(astro)  # no detection at all
    assert every.whole_image and every.box == (0, 0, 512, 512)
    seen = []
    predictor = Predictor("recorder", "test", lambda x: seen.append(x[..., 0]) or np.tile(np.eye(7)[3], (len(x), 1)))
    (res,) = analyse([("brick", brick)], predictor, either)
    assert res.faces[0]["whole_image"] and res.faces[0]["box"] == [0, 0, 512, 512] and "aligned" not in res.faces[0]
    assert np.array_equal(seen[0][0], cv2.resize(brick, (48, 48), interpolation=cv2.INTER_AREA))


def test_an_unknown_detector_name_stops_with_one_line_listing_the_allowed():
    with pytest.raises(FerError, match=r"unknown face detector 'mtcnn\+crop'; allowed: yunet, mtcnn, haar, "
                                       r"yunet\+whole, mtcnn\+whole, haar\+whole, whole"):
        make_detector("mtcnn+crop")


def test_params_accepts_exactly_the_detector_names():
    import typing

    from fer_pipeline.params import Predict

    assert typing.get_args(Predict.model_fields["detector"].annotation) == DETECTOR_NAMES


def test_the_crop_uses_the_landmarks_when_there_are_some(mtcnn):
    photo = astronaut_gray()
    (face,) = mtcnn.detect(photo)
    aligned = face_crop(photo, face)
    face.landmarks = None
    boxed = face_crop(photo, face)
    assert aligned.shape == boxed.shape == (48, 48) and not np.array_equal(aligned, boxed)


# --- fer evaluate-photos --------------------------------------------------------------------


def constant_predictor(label: str) -> Predictor:
    """Always the same answer, so the expected figures follow from the folder by hand."""
    p = np.full(len(LABELS), 0.05, np.float32)
    p[LABELS.index(label)] = 0.7
    return Predictor("constant", "test", lambda x: np.tile(p, (len(x), 1)))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """happiness/ (alias): 3 astronaut photos; sad/: 1 astronaut, 1 photo without a face;
    contempt/: skipped; surprised/: empty; plus an unreadable file in sad/."""
    from skimage import data

    root = tmp_path_factory.mktemp("labelled")
    astro = astronaut_gray()
    for name in ("happiness", "sad", "contempt", "surprised"):
        (root / name).mkdir()
    for i, angle in enumerate((0, 8, -8)):
        write_png(root / "happiness" / f"h{i}.png", rotated(astro, angle))
    write_png(root / "sad" / "s0.png", astro[:, ::-1].copy())
    write_png(root / "sad" / "wall.png", data.brick())
    (root / "sad" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    write_png(root / "contempt" / "c0.png", astro)
    return root


def test_evaluate_photos_gives_the_figures_computed_by_hand(labelled, mtcnn):
    from fer_pipeline.photo_eval import evaluate_photos

    r = evaluate_photos(labelled, constant_predictor("happy"), mtcnn, 0.1, min_confidence=0.8, progress=False)
    # 5 readable photos: 4 with a face (3 happy, 1 sad), 1 without; every found face says happy
    assert r["images"] == 5 and r["faces_found"] == 4 and r["miss_rate"] == 0.2
    assert r["accuracy"] == 0.6 and r["accuracy_on_found"] == 0.75
    assert r["accuracy_ci95"] == pytest.approx([0.2307, 0.8824], abs=1e-4)   # Wilson, 3 of 5
    assert r["recall"] == {"happy": 1.0, "sad": 0.0}
    assert r["confusion"]["rows"] == ["happy", "sad"]
    assert r["confusion"]["counts"] == [[0, 0, 0, 3, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0, 1]]
    assert r["predicted"]["happy"] == 4 and r["predicted"]["no face"] == 1
    assert r["uncertain"] == 4                                  # 0.7 < 0.8 everywhere
    # macro-F1 over happy and sad: happy P = 3/4, R = 1 -> 6/7; sad F1 = 0
    assert r["macro_f1"] == pytest.approx(round((6 / 7 + 0) / 2, 4))
    assert r["skipped"]["class_not_modelled"]["examples"] == ["contempt"]
    assert r["skipped"]["empty_folder"]["examples"] == ["surprised"]
    assert r["skipped"]["unreadable"]["examples"] == ["sad/broken.jpg"]
    assert set(r["ms_per_image"]) == {"decode", "detect", "crop", "classify"}
    assert r["read_whole"] == 0


def test_evaluate_photos_reads_the_photo_without_a_face_whole_with_mtcnn_whole(labelled, mtcnn):
    from fer_pipeline.photo_eval import evaluate_photos, markdown

    r = evaluate_photos(labelled, constant_predictor("sad"), WholeImageIfNone(mtcnn), 0.1, min_confidence=0.8,
                        progress=False)
    # the wall photo in sad/ now has a face (the whole image), and it says sad like the others
    assert r["faces_found"] == 5 and r["miss_rate"] == 0.0 and r["read_whole"] == 1
    assert r["accuracy"] == 0.4 and r["recall"] == {"happy": 0.0, "sad": 1.0}
    assert "5 (miss rate 0.0%; 1 of them the whole image, no face detected)" in markdown(r, "m", "mtcnn+whole")
    assert r["slowest_stage"] in r["ms_per_image"]


def test_an_unknown_class_folder_is_one_line_listing_the_allowed_names(tmp_path):
    from fer_pipeline.photo_eval import list_photos

    (tmp_path / "happy").mkdir()
    (tmp_path / "joyful_ish").mkdir()
    with pytest.raises(FerError, match=r"unknown class folder 'joyful_ish'; allowed \(with aliases\): angry, disgust"):
        list_photos(tmp_path)
    with pytest.raises(FerError, match="no class folders"):
        list_photos(tmp_path / "happy")


def test_the_command_writes_json_markdown_figure_and_an_mlflow_run(labelled, tmp_path, monkeypatch):
    import mlflow

    from fer_pipeline import photo_eval

    from helpers import tiny_model_file

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    model = tiny_model_file(tmp_path / "tiny.keras")
    r = photo_eval.run_evaluate_photos(str(labelled), str(model), str(tmp_path / "out"), "haar", 0.1, 0.4)
    saved = json.loads((tmp_path / "out/photo_eval.json").read_text())
    assert saved["images"] == 5 and saved["detector"] == "haar" and saved["mlflow_run"] == r["mlflow_run"]
    assert "accuracy, end to end" in (tmp_path / "out/photo_eval.md").read_text()
    assert (tmp_path / "out/confusion.png").read_bytes()[:4] == b"\x89PNG"
    run = mlflow.MlflowClient().get_run(r["mlflow_run"])
    assert run.data.metrics["photo_accuracy"] == r["accuracy"] and run.data.tags["detector"] == "haar"
    assert run.data.tags["photo_set"] == labelled.name


def test_outside_a_repository_the_photo_settings_are_the_projects_params_yaml(tmp_path, monkeypatch):
    # One owner: the package's copy is the project's params.yaml itself (a link, copied into a wheel);
    # where the command runs, that directory's params.yaml wins.
    import yaml

    from fer_pipeline.settings import PACKAGED_PARAMS, photo_settings

    assert PACKAGED_PARAMS.resolve() == (REPO / "params.yaml").resolve()
    monkeypatch.chdir(tmp_path)
    assert photo_settings() == repo_params()["predict"]
    mine = repo_params()
    mine["predict"]["min_confidence"] = 0.7
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(mine))
    assert photo_settings()["min_confidence"] == 0.7 and photo_settings(min_confidence=0.2)["min_confidence"] == 0.2
