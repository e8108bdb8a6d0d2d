"""``AdapterModel.add_weighted_adapter`` for LoRA and its variants, against the mathematics (a dense
reference ΔW = Σ wᵢ sᵢ Bᵢ Aᵢ), plus the checks that run before any work. Comparisons with PEFT's own
numbers are in test_weighted_peft.py."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from support.fixtures import logits, state_hash

from adapterhub import AdapterModel
from adapterhub.errors import AdapterExistsError, AdapterNotLoadedError, UnsupportedOperationError, UsageError
from adapterhub.plugin import get_method

WEIGHTS = [0.7, 0.5, -0.3]
TARGETS = ["q_proj", "v_proj", "down_proj"]


def add_lora(am: AdapterModel, name: str, seed: int, method: str = "lora", **config) -> None:
    """A LoRA with every factor random (B too), so that none is a no-op."""
    am.add_adapter(name, method, **({"r": 2, "lora_alpha": 4, "target_modules": TARGETS} | config))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, p in am.model.named_parameters():
            if f".{name}." in pname and "lora_" in pname and "magnitude" not in pname:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            elif f".{name}." in pname and "magnitude" in pname:
                p.mul_(1 + 0.2 * torch.randn(p.shape, generator=g))
    am.set_adapter(None)


def layers(am: AdapterModel, name: str):
    from peft.tuners.lora import LoraLayer

    for path, module in am.model.named_modules():
        if isinstance(module, LoraLayer) and (name in module.lora_A or name in module.lora_embedding_A):
            yield path, module


def factors(layer, name):
    if name in layer.lora_A:
        return layer.lora_B[name].weight.detach(), layer.lora_A[name].weight.detach()
    return layer.lora_embedding_B[name].detach(), layer.lora_embedding_A[name].detach()


def delta(layer, name) -> torch.Tensor:
    """A LoRA's delta in its own orientation (out x in), with its scale."""
    b, a = factors(layer, name)
    return (b.double() @ a.double()) * layer.scaling[name]


def source_scale(layer, name) -> float:
    r, alpha = layer.r[name], layer.lora_alpha[name]
    return alpha / math.sqrt(r) if layer.use_rslora[name] else alpha / r


def reference(layer, names, weights) -> torch.Tensor:
    """Σ wᵢ sᵢ Bᵢ Aᵢ over the sources present in ``layer`` (float64)."""
    total = 0
    for n, w in zip(names, weights, strict=True):
        if n in layer.lora_A or n in layer.lora_embedding_A:
            b, a = factors(layer, n)
            total = total + w * source_scale(layer, n) * (b.double() @ a.double())
    return total


@pytest.fixture
def am(llama_base):
    return AdapterModel(copy.deepcopy(llama_base))


# -- the maths, per variant -----------------------------------------------------------------------

@pytest.mark.parametrize("combination_type", ["linear", "cat", "svd"])
def test_rslora_sources_combine_to_the_sum_of_their_deltas(am, combination_type):
    add_lora(am, "a", 1, r=2, lora_alpha=4, use_rslora=True)
    add_lora(am, "b", 2, r=4, lora_alpha=16, use_rslora=True)
    add_lora(am, "c", 3, r=2, lora_alpha=2)
    extra = {"svd_rank": 8} if combination_type == "svd" else {}
    am.add_weighted_adapter(["a", "b", "c"], WEIGHTS, "m", combination_type, **extra)
    config = am.adapters["m"].config
    assert config["use_rslora"] is False and config["r"] == config["lora_alpha"] == 8
    for path, layer in layers(am, "m"):
        expected = reference(layer, ["a", "b", "c"], WEIGHTS)
        assert (delta(layer, "m") - expected).abs().max().item() < 1e-5, path
        assert expected.abs().max().item() > 0.05


def test_the_new_adapter_computes_what_merging_the_sources_with_the_weights_computes(am, inputs):
    add_lora(am, "a", 1, use_rslora=True)
    add_lora(am, "b", 2, r=4, target_modules=["q_proj", "k_proj"])
    add_lora(am, "c", 3, r=3, lora_alpha=9)
    base = logits(am, inputs)
    am.merge_adapter(["a", "b", "c"], WEIGHTS)
    merged = logits(am, inputs)
    am.unmerge_adapter()
    am.add_weighted_adapter(["a", "b", "c"], WEIGHTS, "m", "linear")
    am.set_adapter("m")
    ours = logits(am, inputs)
    assert (ours - merged).abs().max().item() < 1e-5 and (ours - base).abs().max().item() > 1e-2
    am.merge_adapter()  # a normal adapter: it merges, unmerges and unloads like any other
    assert (logits(am, inputs) - ours).abs().max().item() < 1e-5
    am.unmerge_adapter()
    am.delete_adapter("m")
    am.set_adapter(None)
    assert (logits(am, inputs) - base).abs().max().item() == 0


def test_svd_truncates_to_the_best_rank_k_approximation(am):
    add_lora(am, "a", 1, r=4)
    add_lora(am, "b", 2, r=4, lora_alpha=2)
    am.add_weighted_adapter(["a", "b"], [1.5, -0.5], "m", svd_rank=3)
    for path, layer in layers(am, "m"):
        exact = reference(layer, ["a", "b"], [1.5, -0.5])
        u, s, vh = torch.linalg.svd(exact)
        best = (u[:, :3] * s[:3]) @ vh[:3]
        assert (delta(layer, "m") - best).abs().max().item() < 1e-5, path


def test_rank_and_alpha_patterns(am):
    add_lora(am, "a", 1, r=2, rank_pattern={"v_proj": 4}, alpha_pattern={"down_proj": 16})
    add_lora(am, "b", 2, r=3, lora_alpha=3)
    am.add_weighted_adapter(["a", "b"], [0.6, 0.4], "m", "svd", svd_rank=7)
    assert am.adapters["m"].config["rank_pattern"] == {} and am.adapters["m"].config["r"] == 7
    for path, layer in layers(am, "m"):
        assert (delta(layer, "m") - reference(layer, ["a", "b"], [0.6, 0.4])).abs().max().item() < 1e-5, path


def test_different_target_modules_cover_the_union(am):
    add_lora(am, "a", 1, target_modules=["q_proj"])
    add_lora(am, "b", 2, target_modules=["v_proj", "down_proj"], layers_to_transform=[0])
    am.add_weighted_adapter(["a", "b"], [0.6, 0.4], "m", "cat")
    covered = {p for p, _ in layers(am, "m")}
    assert covered == {p for p, _ in layers(am, "a")} | {p for p, _ in layers(am, "b")}
    for path, layer in layers(am, "m"):
        assert (delta(layer, "m") - reference(layer, ["a", "b"], [0.6, 0.4])).abs().max().item() < 1e-5, path


def test_embedding_loras(am):
    add_lora(am, "a", 1, target_modules=["embed_tokens", "q_proj"])
    add_lora(am, "b", 2, r=3, target_modules=["embed_tokens"])
    am.add_weighted_adapter(["a", "b"], [0.6, 0.4], "m", "svd", svd_rank=5)
    found = dict(layers(am, "m"))
    assert "model.embed_tokens" in found
    for path, layer in found.items():
        assert (delta(layer, "m") - reference(layer, ["a", "b"], [0.6, 0.4])).abs().max().item() < 1e-5, path


def test_lora_biases_combine_with_the_deltas(am):
    add_lora(am, "a", 1, lora_bias=True, target_modules=["down_proj"])
    add_lora(am, "b", 2, lora_alpha=8, lora_bias=True, target_modules=["down_proj"])
    with torch.no_grad():
        for _, layer in layers(am, "a"):
            layer.lora_B["a"].bias.normal_()
            layer.lora_B["b"].bias.normal_()
    am.add_weighted_adapter(["a", "b"], [0.7, -0.3], "m", "cat")
    assert am.adapters["m"].config["lora_bias"] is True
    for _, layer in layers(am, "m"):
        expected = sum(w * source_scale(layer, n) * layer.lora_B[n].bias.detach() for n, w in [("a", 0.7), ("b", -0.3)])
        assert torch.allclose(layer.lora_B["m"].bias.detach() * layer.scaling["m"], expected, atol=1e-6)


def test_dora_magnitudes_combine_as_task_vectors(am, inputs):
    add_lora(am, "a", 1, use_dora=True)
    add_lora(am, "b", 2, use_dora=True, lora_alpha=8)
    add_lora(am, "c", 3, use_dora=True, r=3)
    am.add_weighted_adapter(["a"], [1.0], "a_again")  # one source, weight 1: the source itself
    am.set_adapter("a")
    alone = logits(am, inputs)
    am.set_adapter("a_again")
    assert (logits(am, inputs) - alone).abs().max().item() < 1e-5
    am.add_weighted_adapter(["a", "b", "c"], WEIGHTS, "m", "svd", svd_rank=7)
    assert am.adapters["m"].config["use_dora"] is True
    for path, layer in layers(am, "m"):
        weight = layer.get_base_layer().weight.detach()
        base_norm = torch.linalg.norm(weight, dim=1)
        expected = base_norm + sum(w * (layer.lora_magnitude_vector[n].weight.detach() - base_norm)
                                   for n, w in zip(["a", "b", "c"], WEIGHTS))
        assert torch.allclose(layer.lora_magnitude_vector["m"].weight.detach(), expected, atol=1e-5), path
        assert (delta(layer, "m") - reference(layer, ["a", "b", "c"], WEIGHTS)).abs().max().item() < 1e-5


def test_modules_to_save_combine_as_task_vectors(am):
    add_lora(am, "a", 1, modules_to_save=["lm_head"])
    add_lora(am, "b", 2)
    add_lora(am, "c", 3, modules_to_save=["lm_head"])
    wrapper = am.model.lm_head
    with torch.no_grad():
        wrapper.modules_to_save["a"].weight.add_(0.1)
        wrapper.modules_to_save["c"].weight.mul_(1.5)
    am.add_weighted_adapter(["a", "b", "c"], WEIGHTS, "m", "cat")
    original = wrapper.original_module.weight.detach()
    expected = original + 0.7 * (wrapper.modules_to_save["a"].weight - original) - 0.3 * (
        wrapper.modules_to_save["c"].weight - original)
    assert torch.allclose(wrapper.modules_to_save["m"].weight.detach(), expected.detach(), atol=1e-6)
    assert am.adapters["m"].config["modules_to_save"] == ["lm_head"]


def test_dare_is_reproducible_with_a_seed_and_masks_as_dare_does(am):
    add_lora(am, "a", 1)
    add_lora(am, "b", 2)
    torch.manual_seed(1)
    am.add_weighted_adapter(["a", "b"], [0.8, 0.4], "d1", "dare_ties", density=0.5, seed=11)
    torch.manual_seed(2)  # the global generator does not matter, the seed does
    am.add_weighted_adapter(["a", "b"], [0.8, 0.4], "d2", "dare_ties", density=0.5, seed=11)
    am.add_weighted_adapter(["a", "b"], [0.8, 0.4], "d3", "dare_ties", density=0.5, seed=12)
    for _, layer in layers(am, "d1"):
        assert torch.equal(factors(layer, "d1")[1], factors(layer, "d2")[1])
        assert not torch.equal(factors(layer, "d1")[1], factors(layer, "d3")[1])
    # With b weighted 0 and every component kept, dare_linear_svd is (0.8/p)·mask⊙ΔW_a: each entry is
    # 0 or 0.8/p times a's, and about p of them are kept.
    p = 0.25
    am.add_weighted_adapter(["a", "b"], [0.8, 0.0], "d4", "dare_linear_svd", density=p, svd_rank=64, seed=5)
    kept = total = 0
    for _, layer in layers(am, "d4"):
        mine, source = delta(layer, "d4"), reference(layer, ["a"], [1.0])
        clear = source.abs() > 1e-3  # entries big enough for the ratio to be read (fp32 rounding)
        ratio = (mine / source)[clear]
        kept_here = (ratio - 0.8 / p).abs() < 1e-2
        assert (kept_here | (ratio.abs() < 1e-2)).all(), "every entry is dropped or kept and rescaled"
        kept += int(kept_here.sum())
        total += ratio.numel()
    assert abs(kept / total - p) < 0.02


def test_progress_is_reported_per_module(am):
    add_lora(am, "a", 1)
    add_lora(am, "b", 2)
    calls = []
    am.add_weighted_adapter(["a", "b"], [0.5, 0.5], "m", "svd", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 6) for i in range(1, 7)]  # 3 modules x 2 layers


# -- checks before any work -------------------------------------------------------------------------

@pytest.fixture
def loaded(am):
    add_lora(am, "a", 1)
    add_lora(am, "b", 2)
    add_lora(am, "r4", 3, r=4)
    add_lora(am, "dora", 4, use_dora=True)
    am.add_adapter("ia3", "ia3", target_modules=["k_proj", "v_proj"])
    am.add_adapter("prompt", "prompt_tuning", num_virtual_tokens=2, task_type="CAUSAL_LM")
    am.set_adapter(None)
    return am


@pytest.mark.parametrize(("args", "kwargs", "error", "words"), [
    (["a", "nope"], {}, AdapterNotLoadedError, ["adapters", "'nope'"]),
    (["a", "ia3"], {}, UsageError, ["adapters", "same method", "lora", "ia3"]),
    (["a", "b"], {"combination_type": "ties"}, UsageError, ["density"]),
    (["a", "r4"], {"combination_type": "ties", "density": 0.5}, UnsupportedOperationError, ["equal ranks", "'a': 2", "'r4': 4"]),
    (["a", "r4"], {"combination_type": "magnitude_prune", "density": 0.5}, UnsupportedOperationError, ["equal ranks"]),
    (["a", "dora"], {}, UnsupportedOperationError, ["DoRA and plain LoRA"]),
    (["a", "b"], {"combination_type": "mix"}, UsageError, ["combination_type"]),
    (["prompt", "prompt"], {}, UnsupportedOperationError, ["prompt_tuning"]),
    (["ia3", "ia3"], {"combination_type": "svd"}, UnsupportedOperationError, ["'ia3'", "linear"]),
    (["a", "b"], {"weights": [1.0]}, UsageError, ["2 adapters but 1 weights"]),
    (["a", "b"], {"adapter_name": "a"}, AdapterExistsError, ["'a'"]),
    (["a", "b"], {"adapter_name": "bad name"}, UsageError, ["invalid adapter name"]),
])
def test_invalid_requests_fail_before_any_work(loaded, monkeypatch, args, kwargs, error, words):
    kwargs = dict(kwargs)
    weights = kwargs.pop("weights", [0.5] * len(args))
    name = kwargs.pop("adapter_name", "new")
    for method in ("lora", "ia3", "prompt_tuning"):
        monkeypatch.setattr(get_method(method), "weighted_adapter", _no_work, raising=False)
    before, adapters = state_hash(loaded.model), dict(loaded.adapters)
    with pytest.raises(error) as info:
        loaded.add_weighted_adapter(args, weights, name, **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert state_hash(loaded.model) == before and loaded.adapters.keys() == adapters.keys()


def _no_work(*args, **kwargs):
    raise AssertionError("the combination was computed for an invalid request")


def test_unsupported_lora_options_are_named(am):
    add_lora(am, "a", 1, bias="lora_only")
    add_lora(am, "b", 2)
    with pytest.raises(UnsupportedOperationError, match="bias='lora_only'"):
        am.add_weighted_adapter(["a", "b"], [1, 1], "m", "cat")


def test_ia3_takes_the_default_as_linear_like_peft(loaded):
    loaded.add_adapter("ia3b", "ia3", target_modules=["k_proj", "v_proj", "down_proj"],
                       feedforward_modules=["down_proj"])
    with torch.no_grad():
        for n, p in loaded.model.named_parameters():
            if "ia3_l" in n:
                p.copy_(1 + 0.3 * torch.randn_like(p))
    loaded.add_weighted_adapter(["ia3", "ia3b"], [0.6, 0.4], "m")
    from peft.tuners.ia3 import IA3Layer

    checked = 0
    for _, layer in loaded.model.named_modules():
        if isinstance(layer, IA3Layer) and "m" in layer.ia3_l:
            present = {n: layer.ia3_l[n].detach() for n in ("ia3", "ia3b") if n in layer.ia3_l}
            # a source that does not touch the module counts as the identity (ones)
            expected = 0.6 * present.get("ia3", torch.ones_like(layer.ia3_l["m"])) + 0.4 * present["ia3b"]
            assert torch.allclose(layer.ia3_l["m"].detach(), expected)
            checked += 1
    assert checked == 6
    assert loaded.adapters["m"].config["feedforward_modules"] == ["down_proj"]


def test_qlora_sources_on_a_4bit_base(llama_base, inputs):
    from adapterhub import quantize_4bit

    am = AdapterModel(quantize_4bit(copy.deepcopy(llama_base), "nf4"))
    add_lora(am, "a", 1, method="qlora")
    add_lora(am, "b", 2, method="qlora", r=3, lora_alpha=9)
    am.set_adapter(["a", "b"])
    for name, weight in (("a", 0.6), ("b", -0.4)):  # the sources at their weights, on the same 4-bit base
        for _, layer in layers(am, name):
            layer.set_scale(name, weight)
    stacked = logits(am, inputs)
    am.add_weighted_adapter(["a", "b"], [0.6, -0.4], "m", "svd", svd_rank=5)
    assert am.adapters["m"].method == "qlora"
    for path, layer in layers(am, "m"):
        assert (delta(layer, "m") - reference(layer, ["a", "b"], [0.6, -0.4])).abs().max().item() < 1e-5, path
    am.set_adapter("m")
    assert (logits(am, inputs) - stacked).abs().max().item() < 1e-4


def test_convolution_loras():
    """LoRA on a 3x3 Conv2d: A is a conv kernel, B a 1x1 one; the factors are flattened and put back."""

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.lin = torch.nn.Linear(8, 4)

        def forward(self, x):
            return self.lin(self.conv(x).mean((2, 3)))

    torch.manual_seed(0)
    am = AdapterModel(Net().eval())
    for i, r in enumerate([2, 3]):
        am.add_adapter(f"s{i}", "lora", r=r, lora_alpha=4, target_modules=["conv", "lin"], init_lora_weights=False)
    am.set_adapter(None)
    x = torch.randn(2, 3, 5, 5)
    am.add_weighted_adapter(["s0", "s1"], [0.7, -0.3], "m", "svd", svd_rank=5)
    conv = am.model.conv
    assert tuple(conv.lora_A["m"].weight.shape) == (5, 3, 3, 3) and tuple(conv.lora_B["m"].weight.shape) == (8, 5, 1, 1)
    expected = 0.7 * conv.get_delta_weight("s0") - 0.3 * conv.get_delta_weight("s1")
    assert (conv.get_delta_weight("m") - expected).abs().max().item() < 1e-6
    am.set_adapter("m")
    with torch.no_grad():
        ours = am(x)
        am.set_adapter(None)
        am.merge_adapter(["s0", "s1"], [0.7, -0.3])
        assert (am(x) - ours).abs().max().item() < 1e-5
