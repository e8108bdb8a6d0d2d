"""Benchmark ``AdapterModel.add_weighted_adapter`` against PEFT's ``add_weighted_adapter``, in one run.

Setup (as in the issue): a GPT-2-small-shaped model (12 layers, 768 wide, random weights from a
``GPT2Config``), three r=8 LoRAs on ``c_attn``, ``c_proj`` and ``c_fc`` (``c_proj`` names both the
attention and the MLP output projection: 48 modules) with random factors and different alphas,
``svd_rank=24`` for the ``*svd`` types, ``density=0.5`` for the pruning types. PEFT runs on a
``PeftModel`` holding the three adapters; adapterhub on an ``AdapterModel`` that loaded the same
adapters from the folders PEFT saved. Each call is timed (best of ``--repeat`` when a call takes
under a second) and the new adapter deleted again.

Outputs are compared module by module, as the delta each new adapter applies (``B·A·scale``):
with PEFT's for the types where both compute the same thing, with the exact weighted sum of the
sources' deltas for ``linear`` (PEFT's ``linear`` has cross terms, see the README), and not at all
for the DARE types (random masks).

Run: python benchmarks/bench_merge.py [--repeat 3] [--device cpu|cuda] [--types svd,cat,...]
Goals: ``svd`` at most 0.05x PEFT's time with equal outputs; no type slower than PEFT.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

TYPES = ["svd", "linear", "cat", "ties", "ties_svd", "dare_linear", "dare_ties", "dare_linear_svd", "dare_ties_svd",
         "magnitude_prune", "magnitude_prune_svd"]
WEIGHTS = [0.7, 0.5, -0.3]
ALPHAS = [16, 8, 32]
SVD_RANK = 24
DENSITY = 0.5


def kwargs_for(combination_type: str) -> dict:
    kwargs: dict = {"combination_type": combination_type}
    if combination_type.endswith("svd"):
        kwargs["svd_rank"] = SVD_RANK
    if combination_type not in ("svd", "linear", "cat"):
        kwargs["density"] = DENSITY
    return kwargs


def build(device: str, folder: Path):
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel

    from adapterhub import AdapterModel

    torch.manual_seed(0)
    base = GPT2LMHeadModel(GPT2Config(n_layer=12, n_embd=768, n_head=12)).eval()
    peft_model = None
    for i, alpha in enumerate(ALPHAS):
        config = LoraConfig(r=8, lora_alpha=alpha, target_modules=["c_attn", "c_proj", "c_fc"])
        if peft_model is None:
            peft_model = get_peft_model(copy.deepcopy(base), config, adapter_name=f"s{i}")
        else:
            peft_model.add_adapter(f"s{i}", config)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    names = [f"s{i}" for i in range(len(ALPHAS))]
    peft_model.save_pretrained(str(folder), selected_adapters=names)
    am = AdapterModel(base)
    for name in names:  # PEFT saves adapters other than "default" in sub-folders
        am.load_adapter(folder / name, name=name)
    am.model.to(device)
    return peft_model.to(device).eval(), am, names


def timed(call, cleanup, repeat: int) -> float:
    """Best wall time of ``call()`` over ``repeat`` runs (one when it takes over a second); ``cleanup()``
    (deleting the new adapter) runs between the calls, untimed."""
    best = math.inf
    for i in range(repeat):
        if i:
            cleanup()
        start = time.perf_counter()
        call()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
        if best > 1.0:
            break
    return best


def deltas(model, name: str, prefix: str = "") -> dict[str, torch.Tensor]:
    from peft.tuners.lora import LoraLayer

    out = {}
    for path, layer in model.named_modules():
        if isinstance(layer, LoraLayer) and name in layer.lora_A:
            b, a = layer.lora_B[name].weight.detach().double(), layer.lora_A[name].weight.detach().double()
            out[path.removeprefix(prefix)] = (b @ a) * layer.scaling[name]
    return out


def exact(model, names: list[str]) -> dict[str, torch.Tensor]:
    from peft.tuners.lora import LoraLayer

    out = {}
    for path, layer in model.named_modules():
        if isinstance(layer, LoraLayer) and names[0] in layer.lora_A:
            out[path] = sum(w * (layer.lora_B[n].weight.double() @ layer.lora_A[n].weight.double())
                            * layer.lora_alpha[n] / layer.r[n] for n, w in zip(names, WEIGHTS))
    return out


def max_diff(a: dict, b: dict) -> tuple[float, float]:
    assert a.keys() == b.keys(), (sorted(a)[:3], sorted(b)[:3])
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    scale = max(b[k].abs().max().item() for k in b)
    return diff, scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--types", default=",".join(TYPES))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import peft
    import transformers

    with tempfile.TemporaryDirectory() as tmp:
        peft_model, am, names = build(args.device, Path(tmp))
    print(f"torch {torch.__version__}, peft {peft.__version__}, transformers {transformers.__version__}, "
          f"device {args.device}, threads {torch.get_num_threads()}")
    modules = len(deltas(am.model, names[0]))
    print(f"GPT-2-small shape (12 layers, 768 wide), 3 LoRAs r=8 on c_attn, c_proj, c_fc ({modules} modules), "
          f"weights {WEIGHTS}, svd_rank={SVD_RANK}, density={DENSITY}\n")
    reference = exact(am.model, names)
    rows = []
    for combination_type in args.types.split(","):
        kwargs = kwargs_for(combination_type)
        new = f"m_{combination_type}"

        t_peft = timed(lambda: peft_model.add_weighted_adapter(names, WEIGHTS, new, **kwargs),
                       lambda: peft_model.delete_adapter(new), args.repeat)
        t_ours = timed(lambda: am.add_weighted_adapter(names, WEIGHTS, new, **kwargs),
                       lambda: am.delete_adapter(new), args.repeat)
        ours = deltas(am.model, new)
        if combination_type.startswith("dare"):
            check = "random masks: not compared"
        elif combination_type == "linear":
            diff, scale = max_diff(ours, reference)
            peft_diff, _ = max_diff(deltas(peft_model.base_model.model, new), reference)
            check = f"vs exact sum {diff:.1e} (PEFT's: {peft_diff:.1e}, cross terms)"
        else:
            diff, scale = max_diff(ours, deltas(peft_model.base_model.model, new))
            check = f"vs PEFT {diff:.1e} (max |dW| {scale:.2f})"
        rows.append((combination_type, t_peft, t_ours, check))
        print(f"  {combination_type:<20} PEFT {t_peft:8.3f} s   adapterhub {t_ours:7.3f} s   "
              f"ratio {t_ours / t_peft:6.3f}   {check}", flush=True)
        peft_model.delete_adapter(new)
        am.delete_adapter(new)

    print("\n| combination_type | PEFT (s) | adapterhub (s) | ratio | output check |")
    print("|---|---|---|---|---|")
    for combination_type, t_peft, t_ours, check in rows:
        print(f"| {combination_type} | {t_peft:.3f} | {t_ours:.3f} | {t_ours / t_peft:.3f} | {check} |")
    ratios = {t: o / p for t, p, o, _ in rows}
    ok = all(r <= 1.0 for r in ratios.values()) and ratios.get("svd", 0.0) <= 0.05
    print(f"\ngoals (svd <= 0.05x, every type <= 1x): {'met' if ok else 'NOT met'}")
    sys.exit(0)


if __name__ == "__main__":
    main()
