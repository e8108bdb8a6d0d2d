"""Reading the base: safetensors headers without the tensors, the index (no path leaves the folder),
the architecture's skeleton on the meta device, and which Hub files an export fetches."""

from __future__ import annotations

import json

import pytest

from adapterhub.errors import IncompatibleBaseModelError
from adapterhub.publish.export.base import open_base, read_header, skeleton, wanted_file
from adapterhub.settings import get_settings


def test_headers_match_what_safetensors_reads(bases):
    from safetensors import safe_open

    base = open_base(bases["llama-sharded"], get_settings())
    assert base.sharded and len({t.shard for t in base.tensors.values()}) > 1
    for shard in {t.shard for t in base.tensors.values()}:
        entries = read_header(base.path / shard)
        assert [e.offset for e in entries] == sorted(e.offset for e in entries)
        with safe_open(str(base.path / shard), "pt") as fh:
            assert {e.name for e in entries} == set(fh.keys())
            for e in entries:
                tensor = fh.get_tensor(e.name)
                assert e.shape == tuple(tensor.shape) and e.nbytes == tensor.numel() * tensor.element_size()
    assert base.largest_shard <= 60_000 + 70_000  # 60KB shards, a tensor may overflow one


def test_index_shard_names_must_stay_in_the_folder(bases, tmp_path):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(bases["llama-sharded"], base)
    index = json.loads((base / "model.safetensors.index.json").read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = "../elsewhere.safetensors"
    (base / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(IncompatibleBaseModelError, match="not a file name in this folder"):
        open_base(base, get_settings())


def test_skeleton_knows_layer_types_ties_and_prefix(bases):
    gpt2 = skeleton(json.loads((bases["gpt2"] / "config.json").read_text()), bases["gpt2"])
    assert gpt2.architecture == "GPT2LMHeadModel" and gpt2.prefix == "transformer"
    assert gpt2.layer_types["transformer.h.0.attn.c_attn.weight"] == "Conv1D"
    assert gpt2.layer_types["transformer.wte.weight"] == "Embedding"
    assert gpt2.tied == (("transformer.wte.weight", "lm_head.weight"),)
    llama = skeleton(json.loads((bases["llama"] / "config.json").read_text()), bases["llama"])
    assert llama.tied == () and llama.layer_types["model.layers.0.self_attn.q_proj.weight"] == "Linear"


def test_an_unknown_architecture_leaves_the_skeleton_empty(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-model", "architectures": ["NoSuch"]}))
    empty = skeleton({"model_type": "no-such-model", "architectures": ["NoSuch"]}, tmp_path)
    assert empty.layer_types == {} and empty.tied == () and "could not be built" in empty.note


@pytest.mark.parametrize("path, wanted", [
    ("model.safetensors", True), ("model-00001-of-00002.safetensors", True), ("model.safetensors.index.json", True),
    ("config.json", True), ("tokenizer.json", True), ("generation_config.json", True), ("pytorch_model.bin", False),
    ("original/consolidated.00.pth", False), ("original/model.safetensors", False), ("README.md", False),
])
def test_which_hub_files_an_export_fetches(path, wanted):
    assert wanted_file(path) is wanted
