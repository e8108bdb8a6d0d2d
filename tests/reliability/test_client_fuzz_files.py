"""Hostile adapter files, in both formats (PEFT's and AdapterHub's): fuzzed safetensors headers and
fuzzed adapter_config.json values give only adapterhub's errors, and a refused load leaves the
model bit-identical. A header that declares a tensor type its method cannot use (``I32`` where
``F32`` belongs: the same byte count, so valid safetensors) is always refused, naming the file and
the tensor."""

from __future__ import annotations

import copy
import json
import random
import shutil
import struct
import time

import pytest

from adapterhub.errors import AdapterFormatError, AdapterHubError

from .client_support import size, tally  # noqa: F401 (fixture)

pytestmark = pytest.mark.reliability

# (fixture folder, weights file, base model) for each format; every fixture was saved by the real library.
CASES = {
    "PEFT LoRA": ("peft-0.21.2/lora", "adapter_model.safetensors", "tiny-gpt2"),
    "PEFT IA3": ("peft-0.21.2/ia3", "adapter_model.safetensors", "tiny-gpt2"),
    "AdapterHub LoRA": ("adapters-1.3.0/lora_safetensors", "adapter.safetensors", "tiny-bert"),
    "AdapterHub bottleneck": ("adapters-1.3.0/seq_bn_safetensors", "adapter.safetensors", "tiny-bert"),
}


def _base(name: str):
    from transformers import AutoModel, GPT2LMHeadModel

    from support.fixtures import BASE

    cls = GPT2LMHeadModel if "gpt2" in name else AutoModel
    return cls.from_pretrained(str(BASE / name)).eval()


def _split(raw: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _join(header: dict | str, data: bytes) -> bytes:
    text = header if isinstance(header, str) else json.dumps(header)
    return struct.pack("<Q", len(text.encode())) + text.encode() + data


def _mutations(raw: bytes, rng: random.Random) -> list[tuple[str, bytes]]:
    """One of each kind of damage to a safetensors file, at random places."""
    header, data = _split(raw)
    (n,) = struct.unpack("<Q", raw[:8])
    names = sorted(k for k in header if k != "__metadata__")
    name = rng.choice(names)

    def edit(change) -> bytes:
        h = copy.deepcopy(header)
        change(h)
        return _join(h, data)

    flipped = bytearray(raw)
    flipped[rng.randrange(8, 8 + n)] ^= 1 << rng.randrange(8)
    return [
        ("header byte flipped", bytes(flipped)),
        ("file truncated", raw[:rng.randrange(0, len(raw))]),
        ("header length too large", struct.pack("<Q", rng.choice([n + 1, len(raw), 2**63])) + raw[8:]),
        ("header length too small", struct.pack("<Q", rng.randrange(0, n)) + raw[8:]),
        ("header not JSON", _join("{" + "x" * rng.randrange(1, 20), data)),
        ("header a JSON list", _join("[]", data)),
        ("dtype unknown", edit(lambda h: h[name].update(dtype=rng.choice(["X9", "", 7, None])))),
        ("shape wrong", edit(lambda h: h[name].update(shape=rng.choice([[-1], ["a"], [10**9, 10**9], 3, [2, 0]])))),
        ("data_offsets wrong", edit(lambda h: h[name].update(
            data_offsets=rng.choice([[0], [5, 1], [0, 10**12], "0,4", [h[name]["data_offsets"][0] + 4] * 2])))),
        ("tensor entry not an object", edit(lambda h: h.update({name: rng.choice([1, "x", [], None])}))),
        ("tensor entry missing a field", edit(lambda h: h[name].pop(rng.choice(["dtype", "shape", "data_offsets"])))),
        ("__metadata__ not strings", edit(lambda h: h.update(__metadata__=rng.choice([{"a": 1}, [], "x"])))),
        ("duplicate tensor name", _join(json.dumps(header)[:-1] + f', "{name}": ' + json.dumps(header[name]) + "}", data)),
        ("data buffer longer", raw + b"\0" * rng.randrange(1, 64)),
        ("integer dtype, same byte count", edit(lambda h: h[name].update(dtype=rng.choice(["I32", "U32"])))),
        ("bool/byte dtype, same byte count", edit(lambda h: h[name].update(
            dtype=rng.choice(["U8", "I8", "BOOL"]), shape=h[name]["shape"][:-1] + [h[name]["shape"][-1] * 4]))),
    ]


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fuzzed_safetensors_headers_give_only_adapterhubs_errors(tmp_path, tally):
    from adapterhub import AdapterModel
    from support.fixtures import FIXTURES

    rng = random.Random(16)
    only_ours = {name: tally(f"fuzzed headers, {name}", "only adapterhub errors, model untouched") for name in CASES}
    dtype_refused = tally("integer/byte dtype where F32 belongs (both formats)", "refused, naming file and tensor")
    deadline = time.monotonic() + size(60, 600)
    bases = {base: _base(base) for _, _, base in CASES.values()}
    for case, (folder, weights, base_name) in CASES.items():
        raw = (FIXTURES / folder / weights).read_bytes()
        for round_ in range(size(1, 30)):
            if time.monotonic() > deadline:
                break
            for kind, damaged in _mutations(raw, rng):
                target = tmp_path / f"{case.replace(' ', '-')}-{round_}-{kind.replace(' ', '-').replace('/', '-')}"
                shutil.copytree(FIXTURES / folder, target)
                (target / weights).write_bytes(damaged)
                model = bases[base_name]
                before = _state(model)
                am = AdapterModel(model)
                error: BaseException | None = None
                try:
                    am.load_adapter(str(target), name="fuzzed")
                except Exception as exc:  # noqa: BLE001 - what is raised is what is checked
                    error = exc
                if error is None:  # a harmless change (a flipped byte of whitespace or metadata): undo the load
                    am.delete_adapter("fuzzed")
                    only_ours[case].record(_same(before, _state(model)), f"{kind}: delete_adapter left changes")
                else:
                    ours = isinstance(error, AdapterHubError) and "Traceback" not in str(error)
                    if kind != "header byte flipped":  # (a flipped name may be a name the model lacks)
                        # damage to the file's structure: a format error naming the file (and the field)
                        ours = ours and isinstance(error, AdapterFormatError) and str(target / weights) in str(error)
                    only_ours[case].record(ours and _same(before, _state(model)),
                                           f"{kind}: {type(error).__module__}.{type(error).__name__}: {error}")
                if kind.startswith(("integer dtype", "bool/byte dtype")):
                    named = (isinstance(error, AdapterFormatError) and str(target / weights) in str(error)
                             and "has dtype" in str(error))
                    dtype_refused.record(named, f"{case}: {error!r}")
    tally.check()


def test_fuzzed_adapter_configs_give_only_adapterhubs_errors(tmp_path, tally):
    from adapterhub import AdapterModel
    from support.fixtures import FIXTURES

    rng = random.Random(17)
    bad_values = ["x", -1, 0, 10**12, None, [], {}, [1, "a"], {"a": 1}, True, 1.5, "../../etc"]
    deadline = time.monotonic() + size(60, 600)
    bases = {base: _base(base) for _, _, base in CASES.values()}
    for case, (folder, _, base_name) in CASES.items():
        count = tally(f"fuzzed adapter_config.json, {case}", "only adapterhub errors, model untouched")
        config = json.loads((FIXTURES / folder / "adapter_config.json").read_text())
        paths = [(k,) for k in config] + [("config", k) for k in (config.get("config") or {})]
        for i in range(size(6, 60)):
            if time.monotonic() > deadline:
                break
            changed = copy.deepcopy(config)
            field = rng.choice(paths)
            node = changed
            for key in field[:-1]:
                node = node[key]
            node[field[-1]] = rng.choice(bad_values)
            target = tmp_path / f"{case.replace(' ', '-')}-{i}"
            shutil.copytree(FIXTURES / folder, target)
            (target / "adapter_config.json").write_text(json.dumps(changed))
            model = bases[base_name]
            before = _state(model)
            am = AdapterModel(model)
            try:
                am.load_adapter(str(target), name="fuzzed")
            except AdapterHubError as exc:
                count.record(_same(before, _state(model)), f"{'.'.join(field)}: model changed after {exc}")
            except Exception as exc:  # noqa: BLE001
                count.record(False, f"{'.'.join(field)}={node[field[-1]]!r}: {type(exc).__name__}: {exc}")
            else:
                am.delete_adapter("fuzzed")
                count.record(_same(before, _state(model)), f"{'.'.join(field)}: delete_adapter left changes")
    tally.check()


def test_every_method_declares_its_dtypes():
    from adapterhub.plugin import FLOAT_DTYPES, QUANTIZED_DTYPES, get_methods

    methods = get_methods()
    assert {m.name for m in methods.values()} >= {"lora", "qlora", "ia3", "bottleneck", "bitfit", "prompt_tuning"}
    for method in methods.values():
        assert FLOAT_DTYPES <= method.tensor_dtypes, method.name
        assert "I32" not in method.tensor_dtypes and "I64" not in method.tensor_dtypes, method.name
    qlora = methods["qlora"]
    assert qlora.tensor_dtypes == FLOAT_DTYPES | QUANTIZED_DTYPES
    assert qlora.allowed_dtypes("base_model.model.x.lora_A.weight") == FLOAT_DTYPES
    assert qlora.allowed_dtypes("base_model.model.classifier.modules_to_save.default.weight") >= {"U8"}
    assert methods["lora"].allowed_dtypes("base_model.model.classifier.modules_to_save.default.weight") == FLOAT_DTYPES
