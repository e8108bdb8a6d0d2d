"""Training data for ``adapterhub train``: reading JSON-lines and CSV files, checking their columns,
and the label map of a classification task.

Columns: ``text`` and ``label`` for sequence classification (labels may be strings or integers);
``text``, or ``prompt`` and ``completion``, for causal language modelling. Errors name the file, the
line and the column. No torch here.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError

TASKS = ("sequence-classification", "causal-lm")


@dataclass
class DataSet:
    """Rows read from one file (or given in memory), with what the model card records about them."""

    rows: list[dict[str, Any]]
    source: str  # the file name, or a description of where in-memory rows came from
    sha256: str | None = None  # of the file's bytes


def read_rows(path: str | Path) -> DataSet:
    """Rows of a ``.jsonl`` (one JSON object per line; ``.json``: a list of objects) or ``.csv`` file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file", hint="--data and --eval take a .jsonl or .csv file")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc})") from None
    suffix = path.suffix.lower()
    rows: list[dict[str, Any]] = []
    if suffix in (".jsonl", ".ndjson"):
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path} line {number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise UsageError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    elif suffix == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(document, list) or not all(isinstance(r, dict) for r in document):
            raise UsageError(f"{path}: expected a JSON list of objects", hint="or use JSON lines (.jsonl)")
        rows = list(document)
    elif suffix in (".csv", ".tsv"):
        rows = [dict(r) for r in csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")]
    else:
        raise UsageError(f"{path}: unknown data format {suffix or '(no suffix)'!r}",
                         hint="use .jsonl (one JSON object per line) or .csv with a header row")
    if not rows:
        raise UsageError(f"{path}: holds no rows")
    return DataSet(rows, path.name, digest)


def check_columns(data: DataSet, task: str) -> None:
    """Every row has the columns ``task`` needs, as non-empty strings (labels: strings or integers)."""
    if task not in TASKS:
        raise UsageError(f"unknown task {task!r}", hint=f"use one of {', '.join(TASKS)}")
    if task == "sequence-classification":
        needed = [("text", "label")]
    else:
        needed = [("text",), ("prompt", "completion")]
    for number, row in enumerate(data.rows, 1):
        columns = next((cols for cols in needed if all(c in row for c in cols)), None)
        if columns is None:
            wanted = " or ".join("+".join(cols) for cols in needed)
            raise UsageError(f"{data.source} row {number}: needs the column(s) {wanted} for {task}; it has "
                             f"{', '.join(sorted(row)) or 'none'}")
        for column in columns:
            value = row[column]
            if column == "label":
                if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
                    raise UsageError(f"{data.source} row {number}: label {value!r} is not a string or an integer")
            elif not isinstance(value, str) or (column != "completion" and not value.strip()):
                raise UsageError(f"{data.source} row {number}: column {column!r} must be non-empty text")


def label_names(train: DataSet) -> list[str]:
    """The classes, in head output order: integers in numeric order (also when a CSV file gives them
    as text: "2" before "10"), other labels sorted as text."""
    names = {str(row["label"]).strip() if isinstance(row["label"], str) else str(row["label"]) for row in train.rows}
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)


def label_ids(data: DataSet, names: list[str]) -> list[int]:
    """Each row's class index; a label the training data does not have is an error naming it."""
    index = {name: i for i, name in enumerate(names)}
    out = []
    for number, row in enumerate(data.rows, 1):
        key = str(row["label"]).strip() if isinstance(row["label"], str) else str(row["label"])
        if key not in index:
            raise UsageError(f"{data.source} row {number}: label {key!r} does not occur in the training data",
                             hint=f"training labels: {', '.join(names)}")
        out.append(index[key])
    return out
