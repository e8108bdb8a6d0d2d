"""Many adapters on one model: mixed-batch throughput, loading and switching, against the base model
and against PEFT, measured in one run on a GPT-2-small-shaped model (12 layers, 768 wide, random
init) with r=8 LoRAs on c_attn, c_proj and c_fc (PEFT's own files, random A and B).

Sections (``--sections``, default all):

* ``throughput``: ``am(**inputs, adapter_names=[...])`` vs the plain base model vs PEFT's
  ``model(**inputs, adapter_names=[...])``, in two regimes: a decode step (64 rows x 1 new token
  after a 16-token cache, 64 distinct adapters) and a prefill (32 rows x 16 tokens, 32 adapters).
  Goals: decode >= 0.85x base and >= 1.7x PEFT, prefill >= 0.95x base (throughput ratios).
* ``kernels``: the LoRA term of one GPT-2 layer (its four adapted Linear layers) for every row, by
  two ``embedding_bag`` sums over the stacks (what adapterhub uses for a decode step, one token per
  row), by gather + bmm (what it uses for prefill), by a segment-sorted ``grouped_mm`` and by a loop
  over the adapters (PEFT's way), in both regimes; and how many bytes of adapter factors the rows need.
* ``loading``: apply the 1st adapter (vs PEFT's ``from_pretrained``), load the 2nd, 16th and 64th
  (each vs PEFT's ``load_adapter`` of that adapter), switch the active adapter with 16 and 64
  loaded (vs PEFT's ``set_adapter``). Goals: 16th and 64th load <= 1.2x the 2nd, apply <= 0.5x
  PEFT, switch <= 0.2x PEFT.

The machine this runs on is usually shared: every number is a median of ``--repeats`` samples and
the contenders alternate sample by sample, so that load from other processes hits them alike.
Run: python benchmarks/bench_mixed_batch.py [--threads 2] [--repeats 15] [--sections throughput,kernels,loading]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import warnings
from pathlib import Path

from bench_mixed_kernels import median_interleaved  # a sibling script: benchmarks/ is on sys.path

warnings.filterwarnings("ignore")

TARGETS = ["c_attn", "c_proj", "c_fc"]


def gpt2_small(seed: int = 0):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config()).eval()


def make_adapters(base, root: Path, count: int) -> list[Path]:
    """``count`` PEFT LoRA folders written by PEFT's ``save_pretrained`` (random A and B per adapter)."""
    import torch
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS,
                                                           fan_in_fan_out=True))
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    paths = []
    for i in range(count):
        generator = torch.Generator().manual_seed(1000 + i)
        with torch.no_grad():
            for p in params:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
        path = root / f"a{i}"
        model.save_pretrained(str(path))
        paths.append(path)
    return paths


# -- throughput -------------------------------------------------------------------------------------


def throughput(base, paths: list[Path], repeats: int) -> list[tuple[str, str]]:
    import torch
    from peft import PeftModel

    from adapterhub import AdapterModel
    from adapterhub.toolkit import transformers_compat as compat

    names = [f"a{i}" for i in range(len(paths))]
    am = AdapterModel(copy.deepcopy(base))
    pm = PeftModel.from_pretrained(copy.deepcopy(base), str(paths[0]), adapter_name=names[0])
    for name, path in zip(names, paths, strict=True):
        am.load_adapter(path, name=name)
        if name != names[0]:
            pm.load_adapter(str(path), adapter_name=name)
    pm.eval()
    plain = copy.deepcopy(base)
    generator = torch.Generator().manual_seed(0)
    rows = []

    # decode: one new token per row after a 16-token prefix in the cache
    batch, prefix = 64, 16
    context = torch.randint(0, 50257, (batch, prefix), generator=generator)
    step = torch.randint(0, 50257, (batch, 1), generator=generator)
    mask = torch.ones(batch, prefix + 1, dtype=torch.long)
    row_names = [names[i % len(names)] for i in range(batch)]
    caches = {}
    with torch.no_grad():
        caches["base"] = compat.output_cache(plain(input_ids=context, use_cache=True))
        caches["adapterhub"] = compat.output_cache(am(input_ids=context, use_cache=True, adapter_names=row_names))
        caches["peft"] = compat.output_cache(pm(input_ids=context, use_cache=True, adapter_names=row_names))

    def decode(model, key, **extra):
        def run():
            cache = caches[key]
            kwargs = {"input_ids": step, "attention_mask": mask, "use_cache": True, **extra}
            compat.set_cache(model, kwargs, cache)
            with torch.no_grad():
                model(**kwargs)
            _crop(cache, prefix)
        return run

    times = median_interleaved({
        "base": decode(plain, "base"),
        "adapterhub": decode(am, "adapterhub", adapter_names=row_names),
        "peft": decode(pm, "peft", adapter_names=row_names),
    }, repeats)
    rows.append(_throughput_row("decode step, 64 rows x 1 token, 64 adapters", times, batch))

    # prefill: 32 rows of 16 tokens
    batch, length = 32, 16
    inputs = {"input_ids": torch.randint(0, 50257, (batch, length), generator=generator),
              "attention_mask": torch.ones(batch, length, dtype=torch.long)}
    row_names = names[:batch]

    def prefill(model, **extra):
        def run():
            with torch.no_grad():
                model(**inputs, use_cache=False, **extra)
        return run

    times = median_interleaved({
        "base": prefill(plain),
        "adapterhub": prefill(am, adapter_names=row_names),
        "peft": prefill(pm, adapter_names=row_names),
    }, repeats)
    rows.append(_throughput_row("prefill, 32 rows x 16 tokens, 32 adapters", times, batch * length))
    return rows


def _crop(cache, length: int) -> None:
    """Keep the first ``length`` tokens of a DynamicCache (transformers 5.24 counts tokens to remove)."""
    extra = cache.get_seq_length() - length
    if extra:
        try:
            cache.crop(-extra)
        except ValueError:  # releases before 5.24: the length to keep
            cache.crop(length)


def _throughput_row(label: str, times: dict[str, float], tokens: int) -> tuple[str, str]:
    base, ours, peft = times["base"], times["adapterhub"], times["peft"]
    return (label, f"base {base * 1e3:8.1f} ms  adapterhub {ours * 1e3:8.1f} ms  peft {peft * 1e3:8.1f} ms | "
                   f"throughput vs base {base / ours:5.2f}x  vs PEFT {peft / ours:5.2f}x  "
                   f"(PEFT vs base {base / peft:5.2f}x; {tokens / ours:,.0f} tokens/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2: the 2 cores)")
    parser.add_argument("--repeats", type=int, default=15, help="samples per contender (median)")
    parser.add_argument("--adapters", type=int, default=64)
    parser.add_argument("--sections", default="throughput,kernels,loading")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    sections = set(args.sections.split(","))
    base = gpt2_small()
    root = Path(tempfile.mkdtemp(prefix="bench-mixed-"))
    paths = make_adapters(base, root, args.adapters)
    print(f"GPT-2-small-shaped model (12 layers, 768 wide, random init); {args.adapters} PEFT LoRAs r=8 on "
          f"{', '.join(TARGETS)}; torch threads={args.threads}; medians of {args.repeats} interleaved samples")
    if "throughput" in sections:
        print("\n== mixed-batch throughput (ratios: throughput of adapterhub / the other) ==")
        for label, line in throughput(base, paths, args.repeats):
            print(f"{label:<46} {line}")
    if "kernels" in sections:
        from bench_mixed_kernels import kernels

        print("\n== the LoRA term of one layer for every row (what chose embedding_bag for decode, gather + bmm for prefill) ==")
        for label, line in kernels(args.repeats):
            print(f"{label:<46} {line}")
    if "loading" in sections:
        from bench_mixed_loading import loading

        print("\n== loading and switching ==")
        for label, line in loading(base, paths, args.repeats):
            print(f"{label:<46} {line}")


if __name__ == "__main__":
    main()
