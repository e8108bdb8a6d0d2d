"""The kernels section of ``bench_mixed_batch.py``: the LoRA term of one GPT-2-small layer (c_attn,
attn.c_proj, mlp.c_fc, mlp.c_proj; r=8) for every row of a batch whose rows use different adapters,
computed three ways, in the two regimes of the issue:

* gather + bmm: each row's A and B gathered from the stacks, one ``bmm`` each (what the runtime uses);
* segment-sorted ``grouped_mm``: rows sorted by adapter, ``torch.nn.functional.grouped_mm`` per
  segment, unsorted again (needs as many groups as adapters, and an int32 offsets tensor);
* a loop over the distinct adapters (PEFT's ``_mixed_batch_forward``): index rows, two matmuls, index_add.

and the base layers' own matmuls for scale (what the LoRA term adds to).
"""

from __future__ import annotations

import statistics
import time

SHAPES = [(768, 2304), (768, 768), (768, 3072), (3072, 768)]  # (in, out) of the four adapted layers
RANK = 8


def _medians(contenders: dict, repeats: int) -> dict[str, float]:
    """Median seconds per contender, one sample of each in turn (load from other processes hits all)."""
    for fn in contenders.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for key, fn in contenders.items():
            start = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in samples.items()}


def kernels(repeats: int) -> list[tuple[str, str]]:
    import torch

    gen = torch.Generator().manual_seed(0)
    rows_out = []
    for label, batch, tokens, adapters in (("decode (64 rows x 1 token, 64 adapters)", 64, 1, 64),
                                           ("prefill (32 rows x 16 tokens, 32 adapters)", 32, 16, 32)):
        stacks = [(torch.randn(adapters + 1, i, RANK, generator=gen), torch.randn(adapters + 1, RANK, o, generator=gen),
                   torch.randn(i, o, generator=gen)) for i, o in SHAPES]
        rows_ab = [torch.cat([a.flatten(1), b.flatten(1)], 1) for a, b, _ in stacks]  # the runtime's layout
        xs = [torch.randn(batch, tokens, i, generator=gen) for i, _ in SHAPES]
        slots = torch.arange(batch) % adapters + 1

        def base():
            for x, (_, _, w) in zip(xs, stacks, strict=True):
                x @ w

        def gather_bmm():  # as row_kernels.LoraStacks.after: one 2-D gather of [a | b], two bmm
            for x, ab, (i, o) in zip(xs, rows_ab, SHAPES, strict=True):
                rows = ab.index_select(0, slots)
                h = torch.bmm(x, rows[:, : i * RANK].view(batch, i, RANK))
                torch.bmm(h, rows[:, i * RANK:].view(batch, RANK, o))

        order = torch.argsort(slots, stable=True)
        counts = torch.bincount(slots, minlength=adapters + 1)
        offsets = torch.cumsum(counts, 0).to(torch.int32)

        def grouped():
            for x, (a, b, _) in zip(xs, stacks, strict=True):
                flat = x.index_select(0, order).reshape(-1, x.shape[-1])
                offs = offsets * tokens
                h = torch.nn.functional.grouped_mm(flat, a, offs=offs)
                y = torch.nn.functional.grouped_mm(h, b, offs=offs)
                torch.empty_like(y.view(batch, tokens, -1)).index_copy_(0, order, y.view(batch, tokens, -1))

        distinct = slots.unique().tolist()

        def loop():
            for x, (a, b, _) in zip(xs, stacks, strict=True):
                out = torch.zeros(batch, tokens, b.shape[-1])
                for slot in distinct:
                    idx = (slots == slot).nonzero().flatten()
                    out.index_add_(0, idx, x.index_select(0, idx) @ a[slot] @ b[slot])

        times = _medians({"base matmuls": base, "gather + bmm": gather_bmm, "grouped_mm (sorted)": grouped,
                          "loop over adapters": loop}, repeats)
        floor = sum(4 * (RANK * (i + o)) * min(batch, adapters) for i, o in SHAPES)  # bytes of the rows' A and B
        rows_out.append((label, "  ".join(f"{k} {v * 1e3:7.2f} ms" for k, v in times.items())
                         + f" | rows' adapters to read: {floor / 1e6:.1f} MB"))
    return rows_out
