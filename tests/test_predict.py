"""Faces in real photos (scikit-image's astronaut; nothing is shipped), batched prediction, CLI."""

import json

import numpy as np
import pytest

from fer_pipeline.errors import FerError
from fer_pipeline.faces import HaarFaceDetector, crop_face
from fer_pipeline.labels import LABELS
from fer_pipeline.predict import analyse
from fer_pipeline.predictor import load_predictor

from helpers import astronaut_gray, fer_cli, tiny_model_file, write_png


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    astro = astronaut_gray()
    canvas = np.full((600, 1200), 255, np.uint8)
    canvas[40:552, 0:512] = astro
    canvas[40:552, 640:1152] = astro[:, ::-1]
    folder = d / "folder"
    folder.mkdir()
    return {
        "astronaut": write_png(d / "astronaut.png", astro),
        "group": write_png(folder / "group.png", canvas),
        "blank": write_png(folder / "blank.png", np.full((200, 300), 127, np.uint8)),
        "huge": write_png(d / "huge.jpg", __import__("cv2").resize(astro, (4000, 3000))),
        "text": (folder / "notes.png").write_text("not an image") and folder / "notes.png",
        "folder": folder,
        "model": tiny_model_file(d / "tiny.keras"),
        "dir": d,
    }


def test_haar_finds_the_astronaut_face_where_expected():
    boxes = HaarFaceDetector().detect(astronaut_gray())
    assert len(boxes) == 1
    x, y, w, h = boxes[0].box
    assert abs(x - 177) <= 8 and abs(y - 66) <= 8 and abs(w - 95) <= 10


def test_several_faces_one_batch_and_a_blank_image(photos):
    import cv2

    pred = load_predictor(str(photos["model"]))
    imgs = [(n, cv2.imread(str(photos[n]), cv2.IMREAD_GRAYSCALE)) for n in ("group", "blank")]
    calls = []
    original = pred._fn
    pred._fn = lambda x: calls.append(len(x)) or original(x)
    group, blank = analyse(imgs, pred, HaarFaceDetector())
    assert len(group.faces) == 2 and blank.faces == []
    assert calls == [2]  # all faces of all images in one batch
    face = group.faces[0]
    assert set(face) == {"box", "label", "score", "probabilities"}
    assert list(face["probabilities"]) == list(LABELS)
    assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)


def test_crop_is_48x48_and_clipped_at_the_border():
    img = astronaut_gray()
    assert crop_face(img, (0, 0, 100, 100), margin=0.3).shape == (48, 48)
    assert crop_face(img, (480, 480, 40, 40), margin=0.5).shape == (48, 48)


def test_crop_grows_the_box_by_the_margin_on_each_side():
    # A white 120x120 "face" at a known box on black: with margin 0.25 the crop spans 180x180
    # around it, so the face fills the middle 120/180 of the 48x48 crop, 8 px of black each side.
    img = np.zeros((400, 500), np.uint8)
    img[100:220, 200:320] = 255
    tight = crop_face(img, (200, 100, 120, 120), margin=0.0)
    assert tight.min() == 255
    wide = crop_face(img, (200, 100, 120, 120), margin=0.25)
    profile = wide[24]  # the middle row, left to right
    assert profile[:7].max() == 0 and profile[41:].max() == 0       # black margin, 8 px a side
    assert profile[9:39].min() == 255                               # the face in the middle
    np.testing.assert_array_equal(wide[:, 24], profile)             # the same vertically


def test_a_face_in_a_large_photo_comes_back_at_its_place():
    # Detection runs on a downscaled copy of large photos; the boxes must map back to the photo.
    astro = astronaut_gray()
    x0, y0, w0, h0 = HaarFaceDetector().detect(astro)[0].box
    scale, (ox, oy) = 2.5, (2300, 900)
    big = np.full((3000, 4000), 200, np.uint8)
    side = int(512 * scale)
    big[oy:oy + side, ox:ox + side] = __import__("cv2").resize(astro, (side, side))
    boxes = HaarFaceDetector().detect(big)
    assert len(boxes) == 1
    x, y, w, h = boxes[0].box
    want = (ox + x0 * scale, oy + y0 * scale, w0 * scale, h0 * scale)
    # within 5% of the face's size (detection at another scale finds a slightly different box)
    for got, exp in zip((x, y, w, h), want):
        assert abs(got - exp) <= 0.05 * want[2], ((x, y, w, h), want)


def test_cli_writes_json_lines_annotations_and_skips_unreadable_files(photos, tmp_path):
    out, ann = tmp_path / "out.jsonl", tmp_path / "annotated"
    r = fer_cli("predict", str(photos["astronaut"]), str(photos["folder"]), str(photos["huge"]),
                "--model", str(photos["model"]), "-o", str(out), "--annotate", str(ann), "--detector", "haar")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_name = {row["file"].rsplit("/", 1)[-1]: row for row in rows}
    assert set(by_name) == {"astronaut.png", "group.png", "blank.png", "huge.jpg"}
    assert len(by_name["astronaut.png"]["faces"]) == 1 and len(by_name["group.png"]["faces"]) == 2
    assert by_name["blank.png"]["faces"] == []
    assert (by_name["huge.jpg"]["width"], by_name["huge.jpg"]["height"]) == (4000, 3000)
    assert by_name["huge.jpg"]["faces"], "the face in a 4000x3000 photo is found"
    for row in rows:
        assert set(row) == {"file", "width", "height", "faces", "model"}
        assert row["model"]["chosen"] == "--model" and row["model"]["spec"] == str(photos["model"])
        for f in row["faces"]:
            assert len(f["box"]) == 4 and abs(sum(f["probabilities"].values()) - 1) < 1e-3
    assert "skipped" in r.stderr and "notes.png" in r.stderr and "no face found" in r.stderr
    written = sorted(p.name for p in ann.iterdir())
    assert written == ["astronaut.png", "blank.png", "group.png", "huge.jpg"]
    import cv2

    assert cv2.imread(str(ann / "astronaut.png")).shape == (512, 512, 3)


def test_cli_exits_non_zero_only_when_nothing_is_readable(photos, tmp_path):
    r = fer_cli("predict", str(photos["text"]), "--model", str(photos["model"]))
    assert r.returncode == 1 and "none of the inputs could be read" in r.stderr
    r = fer_cli("predict", str(photos["astronaut"]), "--model", str(tmp_path / "missing.keras"))
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("error: model file") and "dvc repro" in r.stderr


def test_missing_registry_model_names_the_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(FerError, match="cannot load MLflow model models:/nope@champion"):
        load_predictor("models:/nope@champion")


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_a_16_bit_face_is_scaled_to_8_bits_not_clipped_and_found(fmt):
    import io

    from PIL import Image

    from fer_pipeline.faces import make_detector
    from fer_pipeline.predict import decode_image

    astro = astronaut_gray()
    buf = io.BytesIO()
    Image.fromarray(astro.astype(np.uint16) * 256).save(buf, format=fmt)   # values up to 65,280
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I;16")
    gray = decode_image(buf.getvalue())
    assert gray.dtype == np.uint8 and np.abs(gray.astype(int) - astro).max() <= 1   # not clipped to white
    assert len(make_detector("yunet").detect(gray)) == 1


def test_a_float_image_in_0_1_is_scaled_and_transparency_is_laid_over_white():
    import io

    from PIL import Image

    from fer_pipeline.faces import make_detector
    from fer_pipeline.predict import decode_image

    astro = astronaut_gray()
    buf = io.BytesIO()
    Image.fromarray(astro.astype(np.float32) / 255).save(buf, format="TIFF")
    assert np.abs(decode_image(buf.getvalue()).astype(int) - astro).max() <= 1
    # a face over a transparent border whose hidden pixels are noise: the border reads white
    rgba = np.zeros((700, 700, 4), np.uint8)
    rgba[..., :3] = np.random.default_rng(0).integers(0, 256, (700, 700, 3))
    rgba[94:606, 94:606, :3] = astro[..., None]
    rgba[94:606, 94:606, 3] = 255
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    gray = decode_image(buf.getvalue())
    assert (gray[:90] == 255).all() and np.abs(gray[94:606, 94:606].astype(int) - astro).max() <= 1
    (face,) = make_detector("yunet").detect(gray)
    assert abs(face.box[0] + face.box[2] / 2 - (224 + 94)) < 15
