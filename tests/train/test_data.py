"""adapterhub.train.data: reading .jsonl / .json / .csv rows, column checks per task, label maps;
errors name the file, the row and the column."""

from __future__ import annotations

import pytest

from adapterhub.errors import UsageError
from adapterhub.train.data import DataSet, check_columns, label_ids, label_names, read_rows


def test_jsonl_csv_and_json_rows_with_their_sha256(tmp_path):
    import hashlib

    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "good", "label": "pos"}\n\n{"text": "bad", "label": "neg"}\n', encoding="utf-8")
    data = read_rows(jsonl)
    assert data.rows == [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}]
    assert data.source == "d.jsonl" and data.sha256 == hashlib.sha256(jsonl.read_bytes()).hexdigest()
    csv = tmp_path / "d.csv"
    csv.write_text("text,label\n\"good, really\",pos\nbad,neg\n", encoding="utf-8")
    assert read_rows(csv).rows == [{"text": "good, really", "label": "pos"}, {"text": "bad", "label": "neg"}]
    js = tmp_path / "d.json"
    js.write_text('[{"prompt": "a", "completion": " b"}]', encoding="utf-8")
    assert read_rows(js).rows == [{"prompt": "a", "completion": " b"}]


@pytest.mark.parametrize(("name", "content", "words"), [
    ("d.jsonl", '{"text": "a"}\n{oops\n', ["d.jsonl line 2", "not valid JSON"]),
    ("d.jsonl", '["a", "b"]\n', ["line 1", "expected a JSON object"]),
    ("d.json", '{"text": "a"}', ["expected a JSON list of objects"]),
    ("d.txt", "hello", ["unknown data format '.txt'"]),
    ("d.csv", "", ["holds no rows"]),
])
def test_unreadable_files_are_named(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UsageError) as info:
        read_rows(path)
    for word in words:
        assert word in str(info.value)
    with pytest.raises(UsageError, match="no such file"):
        read_rows(tmp_path / "missing.jsonl")


def test_columns_per_task():
    check_columns(DataSet([{"text": "a", "label": 1}, {"text": "b", "label": "x"}], "d"), "sequence-classification")
    check_columns(DataSet([{"text": "a"}, {"prompt": "q", "completion": ""}], "d"), "causal-lm")
    with pytest.raises(UsageError, match="d row 2: needs the column\\(s\\) text\\+label"):
        check_columns(DataSet([{"text": "a", "label": 0}, {"text": "b"}], "d"), "sequence-classification")
    with pytest.raises(UsageError, match="text or prompt\\+completion"):
        check_columns(DataSet([{"prompt": "q"}], "d"), "causal-lm")
    with pytest.raises(UsageError, match="label True is not a string or an integer"):
        check_columns(DataSet([{"text": "a", "label": True}], "d"), "sequence-classification")
    with pytest.raises(UsageError, match="column 'text' must be non-empty text"):
        check_columns(DataSet([{"text": "  ", "label": 0}], "d"), "sequence-classification")
    with pytest.raises(UsageError, match="unknown task"):
        check_columns(DataSet([{"text": "a"}], "d"), "translation")


def test_label_maps():
    strings = DataSet([{"text": "a", "label": "positive"}, {"text": "b", "label": "negative"}], "t")
    assert label_names(strings) == ["negative", "positive"]
    assert label_ids(strings, label_names(strings)) == [1, 0]
    integers = DataSet([{"text": "a", "label": 10}, {"text": "b", "label": 2}], "t")
    assert label_names(integers) == ["2", "10"]  # numeric order, not text order
    from_csv = DataSet([{"text": "a", "label": "10"}, {"text": "b", "label": "2"}, {"text": "c", "label": "0"}], "t")
    assert label_names(from_csv) == ["0", "2", "10"] and label_ids(from_csv, ["0", "2", "10"]) == [2, 1, 0]
    with pytest.raises(UsageError) as info:
        label_ids(DataSet([{"text": "a", "label": "neutral"}], "e.jsonl"), ["negative", "positive"])
    assert "e.jsonl row 1: label 'neutral' does not occur in the training data" in str(info.value)
    assert "negative, positive" in info.value.hint
