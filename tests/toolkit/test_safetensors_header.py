"""The safetensors header check (:mod:`adapterhub.toolkit.safetensors_header`) and the dtype policy of
:func:`adapterhub.toolkit.weights.load_tensors`: every malformed header is an AdapterFormatError
naming the file and the field, and a tensor of a type the reader does not allow is refused by name."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from adapterhub.errors import AdapterFormatError, PickleRefusedError
from adapterhub.plugin import FLOAT_DTYPES, QUANTIZED_DTYPES
from adapterhub.toolkit.safetensors_header import read_header
from adapterhub.toolkit.weights import load_tensors


@pytest.fixture
def good(tmp_path) -> Path:
    path = tmp_path / "w.safetensors"
    save_file({"a": np.ones((2, 3), dtype="float32"), "b": np.zeros(4, dtype="float16")}, str(path),
              metadata={"format": "pt"})
    return path


def _rewrite(path: Path, change) -> Path:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    text = change(header)
    body = (text if isinstance(text, str) else json.dumps(header)).encode()
    path.write_bytes(struct.pack("<Q", len(body)) + body + raw[8 + n:])
    return path


def _error(path: Path, **kwargs) -> str:
    with pytest.raises(AdapterFormatError) as info:
        load_tensors(path, **kwargs)
    assert str(path) in info.value.message
    return info.value.message


def test_a_file_written_by_safetensors_passes(good):
    header = read_header(good)
    assert header["a"] == {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    assert set(load_tensors(good)) == {"a", "b"}


@pytest.mark.parametrize("damage, field", [
    (lambda raw: raw[:5], "header length"),
    (lambda raw: struct.pack("<Q", len(raw)) + raw[8:], "header length"),
    (lambda raw: struct.pack("<Q", 2**63) + raw[8:], "header length"),
    (lambda raw: raw + b"\0\0\0\0", "data_offsets: the tensors cover"),
    (lambda raw: raw[:-4], "reach past the data"),
])
def test_damaged_lengths_name_the_field(good, damage, field):
    good.write_bytes(damage(good.read_bytes()))
    assert f"safetensors header: {field}" in _error(good) or field in _error(good)


@pytest.mark.parametrize("change, field", [
    (lambda h: "{not json", "header: not valid JSON"),
    (lambda h: "[1, 2]", "header: expected a JSON object"),
    (lambda h: h.update(__metadata__={"format": 1}), "__metadata__: must map names to strings"),
    (lambda h: h.update(a=7), "tensor 'a': expected an object"),
    (lambda h: h["a"].update(dtype="F99"), "tensor 'a'.dtype: 'F99' is not a safetensors dtype"),
    (lambda h: h["a"].pop("dtype") and None, "tensor 'a'.dtype: None is not a safetensors dtype"),
    (lambda h: h["a"].update(shape=[2, -3]), "tensor 'a'.shape"),
    (lambda h: h["a"].update(shape="2x3"), "tensor 'a'.shape"),
    (lambda h: h["a"].update(data_offsets=[24, 0]), "tensor 'a'.data_offsets: [24, 0] is not [begin, end]"),
    (lambda h: h["a"].update(data_offsets=[0]), "tensor 'a'.data_offsets"),
    (lambda h: h["a"].update(shape=[3, 3]), "tensor 'a'.data_offsets: [0, 24] hold 24 bytes, but shape [3, 3] of F32 needs 36"),
    (lambda h: h["b"].update(data_offsets=[16, 24]), "tensor 'b'.data_offsets: overlaps the tensor before it"),
    (lambda h: h["a"].update(shape=[2, 2], data_offsets=[0, 16]), "leaves bytes 16..24 unused"),
    (lambda h: json.dumps(h)[:-1] + ', "a": ' + json.dumps(h["a"]) + "}", "name 'a' appears twice"),
])
def test_every_malformed_field_is_named(good, change, field):
    message = _error(_rewrite(good, change))
    assert field in message, message


def test_a_tensor_of_a_type_the_reader_does_not_allow_is_refused_by_name(good):
    _rewrite(good, lambda h: h["a"].update(dtype="I32"))  # same byte count: still valid safetensors
    assert read_header(good)["a"]["dtype"] == "I32"
    message = _error(good)
    assert "tensor 'a' has dtype I32, but it must be floating point (BF16, F16, F32, F64)" in message
    assert load_tensors(good, dtypes=None)["a"].dtype.is_floating_point is False  # no policy: read as written
    assert set(load_tensors(good, dtypes=FLOAT_DTYPES | {"I32"})) == {"a", "b"}
    rule = lambda name: FLOAT_DTYPES | {"I32"} if name == "a" else FLOAT_DTYPES  # noqa: E731
    assert set(load_tensors(good, dtypes=rule)) == {"a", "b"}
    _rewrite(good, lambda h: h["a"].update(dtype="U8", shape=[2, 12]))
    assert "has dtype U8" in _error(good)
    assert set(load_tensors(good, dtypes=FLOAT_DTYPES | QUANTIZED_DTYPES)) == {"a", "b"}


def test_pickled_weights_are_held_to_the_same_dtypes(tmp_path):
    import torch

    path = tmp_path / "adapter_model.bin"
    torch.save({"w": torch.ones(3, dtype=torch.int32)}, path)
    with pytest.raises(PickleRefusedError):
        load_tensors(path)
    assert "tensor 'w' has dtype I32" in _error(path, allow_pickle=True)
    torch.save({"w": torch.ones(3)}, path)
    assert load_tensors(path, allow_pickle=True)["w"].dtype == torch.float32
