import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from fer_pipeline.data import ingest, ingest_to, load_arrays
from fer_pipeline.errors import DataError
from fer_pipeline.fsutil import atomic_path
from fer_pipeline.labels import LABELS

from conftest import FerFixture, decoded, jpeg_bytes, synthetic_face

FORMS = ("zip", "folders", "csv")


def _ingest(path, **kw):
    return ingest(path, workers=1, progress=False, **kw)


def test_all_three_forms_give_identical_outputs(fer_fixture):
    out = {f: _ingest(getattr(fer_fixture, f)) for f in FORMS}
    ref_img, ref_man, _ = out["zip"]
    assert ref_img.shape == (63, 48, 48) and ref_img.dtype == np.uint8
    for form in ("folders", "csv"):
        img, man, rep = out[form]
        assert rep.form == form
        np.testing.assert_array_equal(img, ref_img)
        cols = ["row_id", "split", "usage", "label", "label_name", "pixel_hash"]
        assert man[cols].equals(ref_man[cols])
    counts = ref_man.groupby(["split", "label_name"]).size()
    assert (counts == 3).all() and len(counts) == 21


def test_a_test_sad_image_is_labelled_sad_in_every_form(fer_fixture):
    rel, usage, name, data = next(e for e in fer_fixture.entries if e[0].startswith("test/sad/PrivateTest"))
    target = decoded(data)
    for form in FORMS:
        img, man, _ = _ingest(getattr(fer_fixture, form))
        hits = [i for i in range(len(img)) if np.array_equal(img[i], target)]
        assert len(hits) == 1, form
        row = man.iloc[hits[0]]
        assert (row["label_name"], row["split"], LABELS[row["label"]]) == ("sad", "test", "sad"), form


def test_bad_files_in_class_folders_are_skipped_counted_and_named(fer_fixture, tmp_path):
    root = fer_fixture.copy_folders(tmp_path / "f")
    (root / "train/happy/Training_bad.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (root / "train/happy/notes.txt").write_text("hello")
    rgb = np.stack([synthetic_face(900)] * 3, axis=-1)
    buf = io.BytesIO()
    Image.fromarray(rgb).resize((96, 96)).save(buf, format="PNG")
    (root / "train/fear/Training_big.png").write_bytes(buf.getvalue())
    img, man, rep = _ingest(root)
    s = rep.summary()
    assert s["skipped"]["corrupt_image"]["examples"] == ["train/happy/Training_bad.jpg"]
    assert s["skipped"]["non_image_file"]["examples"] == ["train/happy/notes.txt"]
    assert s["converted"]["converted_grayscale_resized"]["examples"] == ["train/fear/Training_big.png"]
    assert len(img) == 64 and img.shape[1:] == (48, 48)


def test_unknown_class_folder_is_an_error_naming_it_and_the_allowed_names(fer_fixture, tmp_path):
    root = fer_fixture.copy_folders(tmp_path / "f")
    (root / "train/contempt").mkdir()
    (root / "train/contempt/Training_1.jpg").write_bytes(jpeg_bytes(synthetic_face(1)))
    with pytest.raises(DataError, match=r"unknown class folder 'contempt'.*allowed: angry, disgust, fear"):
        _ingest(root)


def test_empty_class_folder_is_reported(fer_fixture, tmp_path):
    root = fer_fixture.copy_folders(tmp_path / "f")
    for f in (root / "test/disgust").iterdir():
        f.unlink()
    img, man, rep = _ingest(root)
    assert rep.empty_class_folders == ["test/disgust"]
    assert not ((man["split"] != "train") & (man["label_name"] == "disgust")).any()


def test_missing_split_is_an_error(fer_fixture, tmp_path):
    kept = [e for e in fer_fixture.entries if "PrivateTest" not in e[0]]
    path = FerFixture.write_zip(tmp_path / "x.zip", kept)
    with pytest.raises(DataError, match=r"missing split\(s\) test \(PrivateTest\)"):
        _ingest(path)


def test_bad_csv_rows_are_skipped_and_counted(fer_fixture, tmp_path):
    rows = [(0, " ".join(["7"] * 2304), "Training"), (3, " ".join(["7"] * 2303), "Training"),
            (3, " ".join(["x"] * 2304), "PublicTest"), (9, " ".join(["7"] * 2304), "PrivateTest"),
            (2, " ".join(["1"] * 2304), "PublicTest"), (2, " ".join(["1"] * 2304), "PrivateTest")]
    path = FerFixture.write_csv(tmp_path / "f.csv", rows)
    img, man, rep = _ingest(path)
    s = rep.summary()
    assert s["skipped"]["bad_pixel_count"]["examples"] == ["f.csv:3"]
    assert s["skipped"]["non_numeric_pixels"]["examples"] == ["f.csv:4"]
    assert s["skipped"]["bad_label"]["examples"] == ["f.csv:5"]
    assert len(img) == 3


def test_zip_entries_with_parent_or_absolute_paths_are_skipped_and_never_written(fer_fixture, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    evil = {"../evil/train/happy/Training_1.jpg": b"x", "/abs/train/happy/Training_2.jpg": b"y"}
    path = FerFixture.write_zip(work / "x.zip", fer_fixture.entries, evil)
    img, man, rep = _ingest(path)
    assert rep.summary()["skipped"]["unsafe_zip_entry"]["count"] == 2
    assert len(img) == 63
    assert not (tmp_path / "evil").exists() and not list(work.parent.glob("**/Training_2.jpg"))


@pytest.mark.parametrize("content,match", [(b"definitely not a zip", "not a valid zip"),
                                           (None, "input not found.*dvc pull")])
def test_not_a_zip_and_missing_path_are_clear_errors(tmp_path, content, match):
    path = tmp_path / "fer2013.zip"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        _ingest(path)


def test_failed_ingest_writes_nothing_and_success_writes_everything(fer_fixture, tmp_path):
    out = tmp_path / "interim"
    with pytest.raises(DataError):
        ingest_to(str(tmp_path / "missing.zip"), str(out), str(tmp_path / "r.json"), workers=1)
    assert not out.exists() or not list(out.iterdir())
    summary = ingest_to(str(fer_fixture.zip), str(out), str(tmp_path / "r.json"), workers=2)
    assert summary["counts"]["test"]["sad"] == 3
    images, manifest = load_arrays(out)
    assert len(images) == len(manifest) == 63
    assert sorted(p.name for p in out.iterdir()) == ["images.npy", "manifest.parquet"]


def test_atomic_path_leaves_no_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.npy"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_subset_takes_at_most_n_per_split_and_class(fer_fixture):
    img, man, _ = _ingest(fer_fixture.zip, max_per_class=2, seed=1)
    assert (man.groupby(["split", "label"]).size() == 2).all()


def test_zip_with_top_level_folder_is_read(fer_fixture, tmp_path):
    entries = [(f"fer2013/{rel}", u, n, d) for rel, u, n, d in fer_fixture.entries]
    path = FerFixture.write_zip(tmp_path / "nested.zip", entries)
    img, man, _ = _ingest(path)
    assert len(img) == 63
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist()[0].startswith("fer2013/train/")


# --- the FER+ votes joined to every image --------------------------------------------------


def _votes_by_source(man) -> dict:
    from fer_pipeline.data import VOTE_COLUMNS

    return {src: man.loc[i, VOTE_COLUMNS].astype(int).tolist() for i, src in man["source"].items()}


def test_votes_join_by_file_name_and_by_csv_row_give_every_image_its_own_votes(fer_fixture):
    from fer_pipeline.data import VOTE_COLUMNS

    img_zip, man_zip, rep = _ingest(fer_fixture.zip, votes=fer_fixture.votes_csv)
    got = _votes_by_source(man_zip)
    for rel, votes in fer_fixture.votes.items():  # computed by hand in conftest.fixture_votes
        assert got[rel] == (votes or [0] * 10), rel
    assert rep.ferplus["with_votes"] == 62 and rep.ferplus["without_votes"]["count"] == 1
    assert rep.ferplus["without_votes"]["examples"] == [fer_fixture.entries[7][0]]
    # the CSV form: same images, joined by row: the same votes per image (matched by pixels)
    img_csv, man_csv, rep_csv = _ingest(fer_fixture.csv, votes=fer_fixture.votes_csv)
    assert rep_csv.ferplus["joined_by"] == "fer2013_row"
    np.testing.assert_array_equal(img_csv, img_zip)
    assert man_csv[VOTE_COLUMNS].equals(man_zip[VOTE_COLUMNS])
    # folders: by file name, as the zip
    _, man_dir, _ = _ingest(fer_fixture.folders, votes=fer_fixture.votes_csv)
    assert man_dir[VOTE_COLUMNS].equals(man_zip[VOTE_COLUMNS])


def test_a_duplicate_image_gets_the_votes_of_its_own_name(fer_fixture, tmp_path):
    rel, usage, name, data = fer_fixture.entries[0]
    copy = ("train/angry/Training_77777.jpg", usage, "angry", data)  # same pixels, another name
    entries = [*fer_fixture.entries, copy]
    votes = {**fer_fixture.votes, copy[0]: [0, 0, 0, 0, 8, 2, 0, 0, 0, 0]}
    path = FerFixture.write_zip(tmp_path / "dup.zip", entries)
    _, man, _ = _ingest(path, votes=FerFixture.write_votes(tmp_path / "v.csv", entries, votes))
    got = _votes_by_source(man)
    assert got[copy[0]] == [0, 0, 0, 0, 8, 2, 0, 0, 0, 0]
    assert got[rel] == fer_fixture.votes[rel]


def test_a_missing_or_foreign_votes_file_is_one_line_naming_it(fer_fixture, tmp_path):
    with pytest.raises(DataError, match=r"FER\+ votes file not found: .*nowhere.csv; get it with `dvc pull`"):
        _ingest(fer_fixture.zip, votes=tmp_path / "nowhere.csv")
    # a votes file that lacks one of the archive's images: it belongs to other data
    votes = {k: v for k, v in fer_fixture.votes.items() if k != fer_fixture.entries[3][0]}
    short = FerFixture.write_votes(tmp_path / "short.csv", fer_fixture.entries, {**votes})
    with pytest.raises(DataError, match=r"short.csv: 1 of 63 images have no row in it .*does not belong"):
        _ingest(fer_fixture.zip, votes=short)
    # a file with a name twice
    text = fer_fixture.votes_csv.read_text().splitlines()
    (tmp_path / "twice.csv").write_text("\n".join([*text, text[1]]) + "\n")
    with pytest.raises(DataError, match="listed twice"):
        _ingest(fer_fixture.zip, votes=tmp_path / "twice.csv")
