import numpy as np
import pytest

from fer_pipeline.data import ingest
from fer_pipeline.fsutil import load_split
from fer_pipeline.preprocess import class_weights, clean, preprocess_to

from conftest import FerFixture, jpeg_bytes

OFF = {"drop_cross_split_duplicates": False, "drop_train_duplicates": False, "drop_near_blank": False,
       "near_blank_std": 3.0, "class_weights": "none"}


@pytest.fixture(scope="module")
def leaky(fer_fixture, tmp_path_factory):
    """The fixture plus one train image that is also a PrivateTest image, and one blank one."""
    test_img = next(e for e in fer_fixture.entries if "PrivateTest" in e[0])
    extra = {"train/fear/Training_77771.jpg": test_img[3],
             "train/fear/Training_77772.jpg": jpeg_bytes(np.full((48, 48), 90, np.uint8))}
    path = FerFixture.write_zip(tmp_path_factory.mktemp("leak") / "l.zip", fer_fixture.entries, extra)
    img, man, _ = ingest(path, workers=1, progress=False)
    return img, man


def test_clean_drops_only_train_rows_and_counts_each_reason(leaky):
    img, man = leaky
    kept, dropped = clean(man, {**OFF, "drop_cross_split_duplicates": True, "drop_near_blank": True})
    assert dropped == {"train_duplicates_of_val_or_test": 1, "train_near_blank": 1}
    assert len(kept) == len(man) - 2
    assert kept["split"].value_counts()["test"] == man["split"].value_counts()["test"]
    kept, dropped = clean(man, OFF)
    assert dropped == {} and len(kept) == len(man)


def test_class_weights_methods():
    y = np.array([0] * 6 + [1] * 2 + [2, 3, 4, 5, 6] * 2)
    assert class_weights(y, "none") == [1.0] * 7
    bal = class_weights(y, "balanced")
    assert bal[0] == pytest.approx(18 / (7 * 6), abs=1e-4) and bal[1] == pytest.approx(18 / (7 * 2), abs=1e-4)
    assert class_weights(y, "sqrt")[1] == pytest.approx(np.sqrt(18 / 14), abs=1e-4)
    with pytest.raises(ValueError, match="use none, balanced or sqrt"):
        class_weights(y, "focal")


def test_run_preprocess_writes_uint8_splits(leaky, tmp_path):
    img, man = leaky
    cfg = {**OFF, "drop_cross_split_duplicates": True, "class_weights": "balanced"}
    summary = preprocess_to(img, man, cfg, str(tmp_path / "p"))
    assert summary["rows"] == {"train": 22, "val": 21, "test": 21}
    assert summary["dropped_total"] == 1
    assert set(summary["class_weights"]) == {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
    x, y = load_split(tmp_path / "p", "test")
    assert x.shape == (21, 48, 48, 1) and x.dtype == np.uint8 and y.dtype == np.int64
