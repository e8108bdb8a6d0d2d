"""The streamed safetensors writer (read back by safetensors itself), shard planning and sizes, and
the output folder that appears only complete."""

from __future__ import annotations

import json

import pytest
import torch

from adapterhub.errors import UsageError
from adapterhub.publish.export.writer import (
    OutTensor,
    ShardFile,
    check_output,
    parse_size,
    plan_shards,
    publish,
    staging,
    write_index,
)

ST_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.int64: "I64",
             torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.float64: "F64"}


def test_parse_size():
    assert parse_size("2GB") == 2_000_000_000
    assert parse_size("300MB") == 300_000_000
    assert parse_size("1GiB") == 1 << 30
    assert parse_size("500kb") == 500_000
    assert parse_size(1234) == 1234
    for bad in ("", "2 GB of it", "-1MB", "0", "MB"):
        with pytest.raises(UsageError, match="max-shard-size"):
            parse_size(bad)


def test_plan_shards_packs_in_order():
    tensors = [OutTensor(f"t{i}", "F32", (n,)) for i, n in enumerate([10, 10, 30, 5, 5])]  # bytes: 40 40 120 20 20
    shards = plan_shards(tensors, 100)
    assert [[t.name for t in s.tensors] for s in shards] == [["t0", "t1"], ["t2"], ["t3", "t4"]]
    assert [s.file for s in shards] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert [s.file for s in plan_shards(tensors, 10_000)] == ["model.safetensors"]


def test_shard_file_is_read_back_by_safetensors(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    generator = torch.Generator().manual_seed(0)
    tensors = {
        "a.weight": torch.randn(3, 5, generator=generator),
        "b": torch.randn(7, generator=generator).to(torch.bfloat16),
        "c": torch.randn(2, 2, generator=generator).half(),
        "ids": torch.arange(6).reshape(2, 3),
        "mask": torch.tensor([True, False, True]),
        "u8": torch.tensor([1, 255], dtype=torch.uint8),
        "scalar": torch.tensor(3.5, dtype=torch.float64),
        "empty": torch.zeros(0, 4),
        "i8": torch.tensor([-3, 7], dtype=torch.int8),
    }
    planned = [OutTensor(k, ST_DTYPES[v.dtype], tuple(v.shape)) for k, v in tensors.items()]
    shard = plan_shards(planned, 10_000)[0]
    writer = ShardFile(tmp_path, shard)
    for name, value in tensors.items():
        writer.write(name, value)
    writer.finish()
    loaded = load_file(str(tmp_path / "model.safetensors"))
    assert loaded.keys() == tensors.keys()
    for name, value in tensors.items():
        assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value), name
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as fh:
        assert fh.metadata() == {"format": "pt"}
    # the data section starts 8-byte aligned, as safetensors writes it
    header_len = int.from_bytes((tmp_path / "model.safetensors").read_bytes()[:8], "little")
    assert (8 + header_len) % 8 == 0


def test_a_non_contiguous_tensor_is_written_by_value(tmp_path):
    from safetensors.torch import load_file

    value = torch.arange(12, dtype=torch.float32).reshape(3, 4).T
    shard = plan_shards([OutTensor("t", "F32", (4, 3))], 10_000)[0]
    writer = ShardFile(tmp_path, shard)
    writer.write("t", value)
    writer.finish()
    assert torch.equal(load_file(str(tmp_path / "model.safetensors"))["t"], value)


def test_shard_file_refuses_what_was_not_planned(tmp_path):
    shard = plan_shards([OutTensor("a", "F32", (2,)), OutTensor("b", "F32", (2,))], 10_000)[0]
    writer = ShardFile(tmp_path, shard)
    with pytest.raises(RuntimeError, match="planned a"):
        writer.write("b", torch.zeros(2))
    with pytest.raises(RuntimeError, match="planned a"):
        writer.write("a", torch.zeros(2, dtype=torch.float16))
    writer.write("a", torch.zeros(2))
    with pytest.raises(RuntimeError, match="1 planned tensors not written"):
        writer.finish()
    writer.close()


def test_index_lists_every_tensor(tmp_path):
    shards = plan_shards([OutTensor("a", "F32", (10,)), OutTensor("b", "BF16", (30,))], 50)
    write_index(tmp_path, shards)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index == {"metadata": {"total_size": 100}, "weight_map": {"a": shards[0].file, "b": shards[1].file}}
    assert write_index(tmp_path, plan_shards([OutTensor("a", "F32", (1,))], 50)) is None


def test_staging_is_removed_unless_published(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with staging(out) as folder:
            (folder / "model.safetensors").write_bytes(b"half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with staging(out) as folder:
        assert folder.parent == tmp_path and folder.name.startswith(".out.partial-")
        (folder / "config.json").write_text("{}")
        publish(folder, out)
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "config.json").is_file()


def test_an_existing_output_is_never_overwritten(tmp_path):
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty")
    check_output(tmp_path / "new")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="already exists"):
        check_output(tmp_path / "file")
    with staging(tmp_path / "taken") as folder:
        (tmp_path / "taken").mkdir()
        (tmp_path / "taken" / "x").write_text("someone else's")
        with pytest.raises(UsageError, match="already exists"):
            publish(folder, tmp_path / "taken")
    assert (tmp_path / "taken" / "x").read_text() == "someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "taken"]
