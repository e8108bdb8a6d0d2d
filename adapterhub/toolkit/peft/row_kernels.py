"""One PEFT layer's adapters stacked in a few tensors, so that a batch whose rows use different
adapters is served with a gather and a batched matmul instead of a loop over the adapters.

Every adapter of a method on a model has a *slot* (0 = no adapter: zero LoRA factors, IA3 vectors of
ones), the same in every layer, so one index tensor per batch serves all layers. A layer's stacks
hold a copy of each adapter's weights at its slot, in the adapter's dtype and device:

* LoRA (``peft.tuners.lora.Linear``, GPT-2's ``Conv1D`` included): ``a[slot] = scaling * A.T``
  ``[in, R]``, ``b[slot] = B.T`` ``[R, out]`` (ranks below the layer's largest are zero-padded, which
  adds exact zeros), ``lora_B``'s bias times the scaling when an adapter has one, and for DoRA the
  per-output factor ``g = magnitude / ||W + scaling * B A||`` (PEFT's own weight norm; 1 for
  other adapters). A row then gets ``base(x) + (x a[slot]) b[slot]``, or with DoRA
  ``bias + g * (base(x) - bias + (x a[slot]) b[slot])``: PEFT's per-adapter forward, re-associated.
  A decode step (one token per row) sums each row's factors weighted by its input with
  ``embedding_bag`` over the stacks read as tables (no copy of the rows' factors); other batches
  gather each row's factors (as 2-D row gathers: ``index_select`` over a 3-D stack is about ten
  times slower on CPU) for a batched matmul.
* IA3 (``peft.tuners.ia3.Linear``): the vector at its slot; a feed-forward layer scales the rows of
  its input, any other its output.

Which measurement chose ``embedding_bag`` for a decode step and gather + ``bmm`` otherwise (over a
segment-sorted ``grouped_mm`` and a loop over the adapters) is printed by
``benchmarks/bench_mixed_batch.py --sections kernels``. :mod:`.rows` keeps the stacks up to date and
decides per forward whether they serve (eval, no gradient for the adapters) or PEFT's own path does.
"""

from __future__ import annotations

from typing import Any

import torch

#: Capacity of a fresh stack (slots, slot 0 included); it doubles when full.
MIN_CAPACITY = 8


def kernel_for(layer: Any) -> type[LayerStacks] | None:
    """The stacks that serve ``layer``, or None when only PEFT's own per-row forward can."""
    from peft.tuners.ia3.layer import Linear as IA3Linear
    from peft.tuners.lora.layer import Linear as LoraLinear

    if type(layer) is LoraLinear:
        return LoraStacks
    if type(layer) is IA3Linear:
        return IA3Stacks
    return None


def _grow(t: torch.Tensor, capacity: int, fill: float = 0.0) -> torch.Tensor:
    out = torch.full((capacity, *t.shape[1:]), fill, dtype=t.dtype, device=t.device)
    out[: t.shape[0]] = t
    return out


class LayerStacks:
    """Stacked adapters of one layer (subclasses per layer kind)."""

    def __init__(self, layer: Any, capacity: int) -> None:
        self.layer = layer
        self.capacity = capacity

    def holds(self, name: str) -> bool:
        raise NotImplementedError

    def usable(self, name: str) -> str | None:
        """Why the stacks cannot hold adapter ``name`` of this layer (None: they can)."""
        return None

    def write(self, name: str, slot: int) -> list[Any]:
        """Copy adapter ``name`` into ``slot``; return the tensors the copy was made from."""
        raise NotImplementedError

    def clear(self, slot: int) -> None:
        raise NotImplementedError

    def grow(self, capacity: int) -> None:
        raise NotImplementedError


class LoraStacks(LayerStacks):
    def __init__(self, layer: Any, capacity: int) -> None:
        super().__init__(layer, capacity)
        ref = layer.get_base_layer().weight
        self.in_features, self.out_features = int(layer.in_features), int(layer.out_features)
        self.dtype, self.device = torch.float32, ref.device
        for name in layer.lora_A:  # the adapters' own dtype (PEFT keeps fp32 factors on a half base)
            self.dtype = layer.lora_A[name].weight.dtype
            break
        self.rank = 0
        self._allocate(capacity, 0)
        self.bias: torch.Tensor | None = None  # [C, out]: scaling * lora_B.bias
        self.g: torch.Tensor | None = None  # [C, out]: DoRA's magnitude / weight norm
        self.dora_slots: set[int] = set()

    def holds(self, name: str) -> bool:
        return name in self.layer.lora_A

    def usable(self, name: str) -> str | None:
        from peft.tuners.lora.variants import DoraLinearVariant

        variant = self.layer.lora_variant.get(name)
        if variant is not None and not isinstance(variant, DoraLinearVariant):
            return f"lora adapter {name!r} uses the {type(variant).__name__} variant"
        return None

    def _allocate(self, capacity: int, rank: int) -> None:
        """``a`` ``[C, in, R]`` and ``b`` ``[C, R, out]``, contiguous (``embedding_bag`` reads them as
        tables of ``C*in`` and ``C*R`` rows); what they held is copied over."""
        old_a, old_b, old_rank = getattr(self, "a", None), getattr(self, "b", None), self.rank
        self.a = torch.zeros(capacity, self.in_features, rank, dtype=self.dtype, device=self.device)
        self.b = torch.zeros(capacity, rank, self.out_features, dtype=self.dtype, device=self.device)
        if old_a is not None:
            keep = min(capacity, old_a.shape[0])
            self.a[:keep, :, :old_rank] = old_a[:keep]
            self.b[:keep, :old_rank] = old_b[:keep]
        self.rank = rank

    def _ensure_rank(self, rank: int) -> None:
        if rank > self.rank:
            self._allocate(self.capacity, rank)

    def write(self, name: str, slot: int) -> list[Any]:
        layer = self.layer
        lora_a, lora_b = layer.lora_A[name].weight, layer.lora_B[name].weight
        scaling = float(layer.scaling[name])
        r = int(lora_a.shape[0])
        self._ensure_rank(r)
        self.clear(slot)
        with torch.no_grad():
            self.a[slot, :, :r] = lora_a.detach().t().to(self.dtype) * scaling
            self.b[slot, :r] = lora_b.detach().t().to(self.dtype)
            sources = [lora_a, lora_b]
            bias = layer.lora_B[name].bias
            if bias is not None:
                if self.bias is None:
                    self.bias = torch.zeros(self.capacity, self.out_features, dtype=self.dtype, device=self.device)
                self.bias[slot] = bias.detach().to(self.dtype) * scaling
                sources.append(bias)
            if name in layer.lora_variant:  # DoRA (usable() refused every other variant)
                if self.g is None:
                    self.g = torch.ones(self.capacity, self.out_features, dtype=self.dtype, device=self.device)
                self.g[slot] = self._dora_factor(name)
                self.dora_slots.add(slot)
                sources += [layer.lora_magnitude_vector[name].weight, layer.get_base_layer().weight]
        return sources

    def _dora_factor(self, name: str) -> torch.Tensor:
        """magnitude / ||W + scaling * B A|| per output, computed by PEFT's DoRA layer."""
        from peft.utils.integrations import dequantize_module_weight

        layer = self.layer
        dora = layer.lora_magnitude_vector[name]
        lora_weight = dora.get_lora_weight(lora_A=layer.lora_A[name], lora_B=layer.lora_B[name])
        weight = dequantize_module_weight(layer.get_base_layer()).to(lora_weight.dtype)
        norm = dora.get_weight_norm(weight=weight, lora_weight=lora_weight.detach(), scaling=layer.scaling[name])
        return (dora.weight.detach() / norm.detach()).to(self.dtype)

    def clear(self, slot: int) -> None:
        self.a[slot].zero_()
        self.b[slot].zero_()
        if self.bias is not None:
            self.bias[slot].zero_()
        if self.g is not None:
            self.g[slot].fill_(1.0)
        self.dora_slots.discard(slot)

    def grow(self, capacity: int) -> None:
        self._allocate(capacity, self.rank)
        if self.bias is not None:
            self.bias = _grow(self.bias, capacity)
        if self.g is not None:
            self.g = _grow(self.g, capacity, 1.0)
        self.capacity = capacity

    # -- serving ------------------------------------------------------------------------------

    def after(self, x: torch.Tensor, out: torch.Tensor, batch: Any, dora: bool) -> torch.Tensor:
        """The layer's output for the rows of ``batch`` (its ``index``: a slot per row) given its base
        output ``out``.

        One token per row (a decode step) in fp32: two ``embedding_bag`` sums over the stacks as
        tables (``h = sum_i x_i a[slot, i]``, ``delta = sum_r h_r b[slot, r]``), which read each row's
        factors once and copy nothing; otherwise each row's factors are gathered (2-D row gathers)
        for two ``bmm``. ``bench_mixed_batch.py --sections kernels`` measures both in both regimes."""
        if self.rank == 0:  # no adapter of the layer has factors yet: every row's term is zero
            return out
        index = batch.index
        n = index.shape[0]
        xs = x.reshape(n, -1, self.in_features)
        if xs.dtype != self.dtype:
            xs = xs.to(self.dtype)
        y = out.view(n, -1, self.out_features) if out.is_contiguous() else None
        in_place = not dora and y is not None and out.dtype == self.dtype
        rank = self.rank
        if xs.shape[1] == 1 and self.dtype == torch.float32:
            h = _bag_sum(self.a.view(-1, rank), batch, self.in_features, xs.reshape(-1))  # [n, R], scaled
            delta = _bag_sum(self.b.view(-1, self.out_features), batch, rank, h.reshape(-1))  # [n, out]
            if in_place:
                y.view(n, -1).add_(delta)
                if self.bias is not None:
                    y.add_(self.bias.index_select(0, index).unsqueeze(1))
                return out
            delta = delta.view(n, 1, -1)
        else:
            width = self.in_features * rank
            a = self.a.view(-1, width).index_select(0, index).view(n, self.in_features, rank)
            b = self.b.view(-1, rank * self.out_features).index_select(0, index).view(n, rank, self.out_features)
            h = torch.bmm(xs, a)  # [n, tokens, R], scaled
            if in_place:
                y.baddbmm_(h, b)
                if self.bias is not None:
                    y.add_(self.bias.index_select(0, index).unsqueeze(1))
                return out
            delta = torch.bmm(h, b)
        if self.bias is not None:
            delta = delta + self.bias.index_select(0, index).unsqueeze(1)
        y = out.reshape(n, -1, self.out_features).to(self.dtype)
        if dora:
            base_bias = self.layer.get_base_layer().bias
            g = self.g.index_select(0, index).unsqueeze(1)
            if base_bias is None:
                y = g * (y + delta)
            else:
                bias = base_bias.detach().to(self.dtype)
                y = bias + g * (y - bias + delta)
        else:
            y = y + delta
        return y.to(out.dtype).view(out.shape)


def _bag_sum(table: torch.Tensor, batch: Any, width: int, weights: torch.Tensor) -> torch.Tensor:
    """Row ``k`` of the result: ``sum_j weights[k*width + j] * table[slot_k*width + j]`` (one bag of
    ``width`` table rows per batch row). The bags' indices depend only on the batch and ``width``:
    made once per batch."""
    bags = batch.bags.get(width)
    if bags is None:
        index = batch.index
        rows = (index.unsqueeze(1) * width + torch.arange(width, device=index.device)).reshape(-1)
        bags = batch.bags[width] = (rows, torch.arange(0, rows.numel(), width, device=index.device))
    return torch.nn.functional.embedding_bag(bags[0], table, bags[1], mode="sum", per_sample_weights=weights)


class IA3Stacks(LayerStacks):
    def __init__(self, layer: Any, capacity: int) -> None:
        super().__init__(layer, capacity)
        self.feedforward = bool(layer.is_feedforward)
        width = int(layer.in_features if self.feedforward else layer.out_features)
        dtype, device = torch.float32, layer.get_base_layer().weight.device
        for name in layer.ia3_l:
            dtype = layer.ia3_l[name].dtype
            break
        self.dtype, self.device = dtype, device
        self.vectors = torch.ones(capacity, width, dtype=dtype, device=device)

    def holds(self, name: str) -> bool:
        return name in self.layer.ia3_l

    def write(self, name: str, slot: int) -> list[Any]:
        vector = self.layer.ia3_l[name]
        with torch.no_grad():
            self.vectors[slot] = vector.detach().flatten().to(self.dtype)
        return [vector]

    def clear(self, slot: int) -> None:
        self.vectors[slot].fill_(1.0)

    def grow(self, capacity: int) -> None:
        self.vectors = _grow(self.vectors, capacity, 1.0)
        self.capacity = capacity

    def rows(self, index: torch.Tensor, names: list[str] | None) -> torch.Tensor:
        """[n, width] scaling per row: gathered from the stack, or (``names`` given: gradients must
        reach the adapters) built from the adapters' own parameters."""
        if names is None:
            return self.vectors.index_select(0, index)
        layer = self.layer
        ones = torch.ones_like(self.vectors[0])
        return torch.stack([layer.ia3_l[n].flatten() if n in layer.ia3_l else ones for n in names])

    def scale(self, t: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        n = vectors.shape[0]
        shaped = t.reshape(n, -1, t.shape[-1]).to(vectors.dtype)  # PEFT multiplies in the vector's dtype
        return (shaped * vectors.unsqueeze(1)).to(t.dtype).view(t.shape)
