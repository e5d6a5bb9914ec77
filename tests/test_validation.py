import json

import numpy as np
import pytest

from fer_pipeline.data import ingest
from fer_pipeline.errors import ValidationFailed
from fer_pipeline.validation import validate, validate_to

from conftest import FerFixture, jpeg_bytes


@pytest.fixture(scope="module")
def tiny(fer_fixture):
    img, man, rep = ingest(fer_fixture.zip, workers=1, progress=False, votes=fer_fixture.votes_csv)
    return img, man, rep.summary()


def test_clean_fixture_passes_every_hard_expectation(tiny, tiny_validate_cfg):
    img, man, rep = tiny
    s = validate(img, man, tiny_validate_cfg, rep)
    assert s["success"], [c for c in s["checks"] if not c["success"]]
    assert s["expectations"] >= 25
    assert s["counts"]["val"]["total"] == 21
    assert s["soft"]["duplicates_within_split"]["count"] == 0


def test_out_of_bounds_counts_fail_with_a_one_line_summary_and_still_write_reports(tiny, tiny_validate_cfg, tmp_path):
    img, man, rep = tiny
    cfg = {**tiny_validate_cfg, "split_rows": {**tiny_validate_cfg["split_rows"], "test": [3500, 3700]}}
    paths = [tmp_path / n for n in ("v.json", "d.json", "v.html")]
    with pytest.raises(ValidationFailed) as err:
        validate_to(img, man, cfg, rep, *map(str, paths))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("validation failed: 1 of")
    assert "split" in msg and "test" in msg and "3500" in msg
    metrics = json.loads(paths[0].read_text())
    assert metrics["success"] is False and metrics["failed"] == 1
    page = paths[2].read_text()
    assert "<h1>FER2013 data validation: FAILED</h1>" in page
    assert page.count("<tr class=bad>") == 1 and "<td>FAIL</td>" in page


def test_the_validation_page_escapes_what_it_shows(tiny, tiny_validate_cfg):
    from fer_pipeline.validation import render_html

    img, man, rep = tiny
    s = validate(img, man, tiny_validate_cfg, rep)
    s["soft"]["near_blank"]["examples"] = ["train/<script>alert(1)</script>.jpg"]
    page = render_html(s)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in page
    assert f"<td>val</td><td>{s['counts']['val']['total']:,}</td>" in page


def test_labels_outside_the_canonical_set_and_bad_shapes_fail(tiny, tiny_validate_cfg):
    img, man, rep = tiny
    bad = man.copy()
    bad.loc[0, "label_name"] = "contempt"
    s = validate(img, bad, tiny_validate_cfg, rep)
    failed = [c for c in s["checks"] if not c["success"]]
    assert any(c["name"] == "manifest: expect_column_values_to_be_in_set" and "label_name" in c["detail"]
               for c in failed)
    s = validate(np.zeros((63, 40, 40), np.uint8), man, tiny_validate_cfg, rep)
    assert not s["success"]
    assert any(c["name"].startswith("pixel_array") and not c["success"] for c in s["checks"])


def test_missing_split_fails(tiny, tiny_validate_cfg):
    img, man, rep = tiny
    keep = man["split"] != "val"
    s = validate(img[keep.to_numpy()], man[keep].reset_index(drop=True), tiny_validate_cfg, rep)
    failed = {c["name"] for c in s["checks"] if not c["success"]}
    assert "manifest: expect_column_distinct_values_to_contain_set" in failed


def test_soft_findings_count_duplicates_leakage_and_blank_images(fer_fixture, tmp_path, tiny_validate_cfg):
    entries = list(fer_fixture.entries)
    train_dup = entries[0]  # a train image, repeated in train and in PrivateTest
    extra = {
        "train/angry/Training_99991.jpg": train_dup[3],
        "test/angry/PrivateTest_99992.jpg": train_dup[3],
        "train/happy/Training_99993.jpg": jpeg_bytes(np.full((48, 48), 128, np.uint8)),
    }
    path = FerFixture.write_zip(tmp_path / "dup.zip", entries, extra)
    img, man, rep = ingest(path, workers=1, progress=False)
    soft = validate(img, man, tiny_validate_cfg, rep.summary())["soft"]
    assert soft["duplicates_within_split"]["count"] == 1
    assert soft["duplicates_within_split"]["by_split"]["train"] == 1
    assert soft["duplicates_across_splits"]["by_split"] == {"val": 0, "test": 1}
    assert soft["duplicates_across_splits"]["examples"] == ["test/angry/PrivateTest_99992.jpg"]
    assert soft["near_blank"]["examples"] == ["train/happy/Training_99993.jpg"]
