import pytest

from fer_pipeline.labels import CSV_ID_TO_NAME, LABELS, csv_id_to_label_id, label_id


def test_canonical_order_is_the_kaggle_folder_order():
    assert LABELS == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert list(LABELS) == sorted(LABELS)


def test_csv_ids_map_by_name_not_position():
    # The original CSV: 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral.
    assert LABELS[csv_id_to_label_id(4)] == "sad"
    assert LABELS[csv_id_to_label_id(5)] == "surprise"
    assert LABELS[csv_id_to_label_id(6)] == "neutral"
    assert sorted(CSV_ID_TO_NAME.values()) == sorted(LABELS)
    assert all(LABELS[csv_id_to_label_id(i)] == CSV_ID_TO_NAME[i] for i in range(7))


def test_unknown_names_and_ids_are_rejected_with_the_allowed_names():
    with pytest.raises(ValueError, match="allowed: angry, disgust"):
        label_id("contempt")
    with pytest.raises(ValueError, match="outside 0-6"):
        csv_id_to_label_id(7)
    assert label_id(" Sad ") == LABELS.index("sad")
