"""Torch side of the bottleneck method: the adapter module and where it sits in a model.

Two kinds of placement, the ones ``adapters`` 1.3.0 uses:

* **BERT-like residual sub-layers** (``BertSelfOutput`` after attention, ``BertOutput`` after the
  feed-forward block; RoBERTa, ELECTRA, ... share the structure):
  ``output = LayerNorm(dropout(dense(h)) + input)``. The sub-layer gets a ``ModuleDict`` named
  ``adapters`` (keys ``encoder.layer.0.output.adapters.<name>.adapter_up.weight``) and an
  instance-level ``forward`` that composes the active adapters with the transformer LayerNorm.
* **Pre-norm decoder blocks** (``GPT2Block``; ``LlamaDecoderLayer`` and its relatives): the block
  computes ``residual + sublayer(norm(residual))`` for attention and for the MLP, with no LayerNorm
  after the sum. The block gets two containers, ``attention_adapters`` and ``output_adapters``
  (keys ``h.0.output_adapters.adapters.<name>...``, as in ``adapters``). A forward pre-hook on the
  norm in front of each sub-layer records the residual; a forward hook on the sub-layer replaces its
  output ``y`` by ``adapted(y, residual) - residual``, so that the block's own ``residual + ...``
  yields what ``adapters`` computes there (its bottleneck layer called with ``layer_norm=None``).

Composition follows adapters' pre_forward / adapter / post_forward stages; one adapter per row
(``adapter_names=``, BatchSplit, Parallel) runs each adapter's rows together.
"""

from __future__ import annotations

import math
import re
import types
from dataclasses import dataclass

import torch
from torch import nn

LOCATION_RE = re.compile(r"(?:^|\.)layer\.(?P<idx>\d+)\.(?P<where>attention\.output|output)$")
BLOCK_RE = re.compile(r"(?:^|\.)(?:h|layers|layer|blocks)\.(?P<idx>\d+)$")
SETUP_ATTR = "_adapterhub_bn_setup"
HOOKS_ATTR = "_adapterhub_bn_hooks"
RESIDUAL_ATTR = "_adapterhub_bn_residual"
EMPTY_SETUP = ("stack", (), None, None)

#: Pre-norm block layouts: (norm before the sub-layer, the sub-layer) for "mh" and "output".
BLOCK_LAYOUTS = (
    {"mh": ("ln_1", "attn"), "output": ("ln_2", "mlp")},  # GPT-2
    {"mh": ("input_layernorm", "self_attn"), "output": ("post_attention_layernorm", "mlp")},  # Llama family
)
CONTAINER_NAMES = {"mh": "attention_adapters", "output": "output_adapters"}


@dataclass
class Location:
    """One place a bottleneck adapter can go.

    ``path``: where the module holding the ``adapters`` ModuleDict is (or will be) in the base model;
    ``host``: the BERT sub-layer itself, or the decoder block that gets a container child.
    """

    path: str
    idx: int
    where: str  # "mh" | "output"
    host: nn.Module
    kind: str  # "sublayer" | "block"
    norm: str | None = None
    sublayer: str | None = None

    @property
    def hidden(self) -> int:
        if self.kind == "sublayer":
            return int(self.host.dense.out_features)
        norm = getattr(self.host, self.norm)
        return int(norm.weight.shape[0])

    def container(self) -> nn.Module | None:
        """The module holding ``.adapters`` (None for a block not yet installed)."""
        if self.kind == "sublayer":
            return self.host
        return self.host._modules.get(CONTAINER_NAMES[self.where])


def find_locations(base: nn.Module) -> list[Location]:
    """Every BERT-like residual sub-layer, or else every pre-norm decoder block's two sub-layers."""
    found: list[Location] = []
    for path, module in base.named_modules():
        m = LOCATION_RE.search(path)
        if not m or not all(hasattr(module, a) for a in ("dense", "dropout", "LayerNorm")):
            continue
        where = "mh" if m["where"] == "attention.output" else "output"
        found.append(Location(path, int(m["idx"]), where, module, "sublayer"))
    if found:
        return found
    for path, module in base.named_modules():
        m = BLOCK_RE.search(path)
        if not m:
            continue
        for layout in BLOCK_LAYOUTS:
            if all(isinstance(getattr(module, n, None), nn.Module) for pair in layout.values() for n in pair):
                for where, (norm, sub) in layout.items():
                    found.append(Location(f"{path}.{CONTAINER_NAMES[where]}", int(m["idx"]), where, module,
                                          "block", norm, sub))
                break
    return found


def down_size(hidden: int, config: dict, layer_idx: int) -> int:
    factor = config["reduction_factor"]
    if isinstance(factor, dict):
        factor = factor.get(str(layer_idx), factor.get("default"))
        if factor is None:
            raise ValueError(f"reduction_factor has no entry for layer {layer_idx} and no 'default'")
    return int(hidden // factor)


class Activation(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        from transformers.activations import get_activation

        name = name.lower()
        self.f = nn.functional.leaky_relu if name == "leakyrelu" else get_activation(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)


class Bottleneck(nn.Module):
    """One bottleneck adapter at one location; parameter names follow ``adapters`` 1.3.0."""

    def __init__(self, hidden: int, down: int, config: dict, shared: nn.Module | None = None) -> None:
        super().__init__()
        from .phm import PHMLinear
        self.config = config
        self.is_parallel = bool(config["is_parallel"])
        seq: list[nn.Module] = []
        if config["ln_before"]:
            self.adapter_norm_before = nn.LayerNorm(hidden)
            seq.append(self.adapter_norm_before)
        phm = bool(config["phm_layer"])  # Compacter: PHM layers instead of the two Linear maps
        seq.append(PHMLinear(hidden, down, "down", config, shared) if phm else nn.Linear(hidden, down))
        seq.append(Activation(config["non_linearity"]))
        self.adapter_down = nn.Sequential(*seq)
        self.adapter_up = PHMLinear(down, hidden, "up", config, shared) if phm else nn.Linear(down, hidden)
        scaling = config["scaling"]
        if scaling == "learned":
            self.scaling = nn.Parameter(torch.ones(1))
        elif scaling == "channel":
            self.scaling = nn.Parameter(torch.ones(hidden))
        else:
            self.scaling = float(scaling)
        if config["ln_after"]:
            self.adapter_norm_after = nn.LayerNorm(hidden)
        if config["use_gating"]:
            self.gate = nn.Linear(hidden, 1)
        self.dropout = nn.Dropout(p=float(config["dropout"]))

    def init_weights(self) -> None:
        """Fresh weights for training, per ``init_weights`` (bert / mam_adapter / houlsby)."""
        kind = self.config["init_weights"]
        linears = [m for m in self.modules() if isinstance(m, nn.Linear)]
        for module in self.modules():
            if hasattr(module, "weight_blocks"):  # PHM layers initialise by their own config
                module.init_weights()
        with torch.no_grad():
            if kind == "mam_adapter" and not self.config["phm_layer"]:
                down = self.adapter_down[-2]
                nn.init.kaiming_uniform_(down.weight, a=math.sqrt(5))
                nn.init.zeros_(down.bias)
                nn.init.zeros_(self.adapter_up.weight)
                nn.init.zeros_(self.adapter_up.bias)
            else:
                std = 1e-2 if kind == "houlsby" else 0.02
                for lin in linears:
                    if kind == "houlsby":
                        nn.init.trunc_normal_(lin.weight, std=std, a=-2 * std, b=2 * std)
                    else:
                        nn.init.normal_(lin.weight, std=std)
                    nn.init.zeros_(lin.bias)

    # The three stages of adapters' Adapter/ParallelAdapter.
    def pre_forward(self, hidden, input_tensor, layer_norm):
        if self.is_parallel:
            return input_tensor, input_tensor
        rbl = self.config["residual_before_ln"]
        residual = hidden if rbl is True else None
        if self.config["original_ln_before"]:
            hidden = hidden + input_tensor
            if rbl == "post_add":
                residual = hidden
            if layer_norm is not None:
                hidden = layer_norm(hidden)
        if not rbl:
            residual = hidden
        return hidden, residual

    def forward(self, x, residual):
        up = self.adapter_up(self.adapter_down(x)) * self.scaling
        out = self.dropout(up)
        if self.config["use_gating"]:
            gate = torch.sigmoid(self.gate(x)).mean(dim=1).unsqueeze(-1)
            out = out * gate
        if self.is_parallel:
            return self.adapter_norm_after(out) if self.config["ln_after"] else out
        if self.config["adapter_residual_before_ln"]:
            out = out + residual
        if self.config["ln_after"]:
            out = self.adapter_norm_after(out)
        if not self.config["adapter_residual_before_ln"]:
            out = out + residual
        return out

    def post_forward(self, hidden, input_hidden, input_tensor, layer_norm, residual_outside=False):
        """``residual_outside``: the host block adds ``input_tensor`` itself afterwards (pre-norm
        decoder blocks), so the final ``+ input_tensor`` is left out, or undone when the config
        does not want it."""
        if self.is_parallel:
            hidden = hidden + input_hidden
        if residual_outside:
            return hidden if self.config["original_ln_after"] else hidden - input_tensor
        if self.config["original_ln_after"]:
            hidden = hidden + input_tensor
            if layer_norm is not None:
                hidden = layer_norm(hidden)
        return hidden


def _plain(hidden, input_tensor, layer_norm, outside):
    if outside:  # the block adds the residual itself
        return hidden
    if layer_norm is None:
        return hidden + input_tensor
    return layer_norm(hidden + input_tensor)


def _stack(adapters, names, hidden, input_tensor, layer_norm, outside):
    present = [n for n in names if n in adapters]
    if not present:
        return _plain(hidden, input_tensor, layer_norm, outside)
    input_hidden = hidden
    # adapters 1.3.0 compose_stack: each child re-runs pre_forward (LayerNorm(h + input)).
    for name in present:
        hidden, residual = adapters[name].pre_forward(hidden, input_tensor, layer_norm)
        hidden = adapters[name](hidden, residual)
    return adapters[present[-1]].post_forward(hidden, input_hidden, input_tensor, layer_norm, outside)


def _average(adapters, names, weights, hidden, input_tensor, layer_norm, outside):
    pairs = [(n, w) for n, w in zip(names, weights) if n in adapters]
    if not pairs:
        return _plain(hidden, input_tensor, layer_norm, outside)
    input_hidden = hidden
    hidden, residual = adapters[pairs[0][0]].pre_forward(hidden, input_tensor, layer_norm)
    outs = torch.stack([adapters[n](hidden, residual) * w for n, w in pairs], 0)
    # adapters' mean(): mean over children of the weighted outputs (residual included); the last
    # child's post_forward finishes, as in compose_average.
    last = adapters[pairs[-1][0]]
    return last.post_forward(outs.mean(0), input_hidden, input_tensor, layer_norm, outside)


def _rows(adapters, names, hidden, input_tensor, layer_norm, outside):
    """Row i through adapter ``names[i]`` alone (pre_forward / adapter / post_forward); rows whose
    adapter is not a bottleneck here (another method serves them, or none) get the plain sub-layer.
    The rows of one adapter run together, whatever their order."""
    if len(names) != hidden.shape[0]:
        raise ValueError(f"adapter_names/BatchSplit: {len(names)} rows given but the batch has {hidden.shape[0]} "
                         "(BatchSplit: make batch_sizes add up to the batch size)")
    groups: dict = {}
    for i, name in enumerate(names):
        groups.setdefault(name if name in adapters else None, []).append(i)
    if len(groups) == 1:
        (name,) = groups
        return _stack(adapters, [name] if name else [], hidden, input_tensor, layer_norm, outside)
    out = None
    for name, rows in groups.items():
        index = torch.tensor(rows, device=hidden.device)
        part = _stack(adapters, [name] if name else [], hidden.index_select(0, index),
                      input_tensor.index_select(0, index), layer_norm, outside)
        if out is None:
            out = part.new_empty((hidden.shape[0], *part.shape[1:]))
        out.index_copy_(0, index, part)
    return out


def compose(container: nn.Module, hidden, input_tensor, layer_norm, outside: bool = False):
    """Run the active setup of ``container`` (a module with ``.adapters`` and the setup attribute)."""
    mode, names, weights, sizes = getattr(container, SETUP_ATTR, EMPTY_SETUP)
    adapters = container.adapters
    if mode == "average":
        return _average(adapters, names, weights, hidden, input_tensor, layer_norm, outside)
    if mode == "rows":
        return _rows(adapters, names, hidden, input_tensor, layer_norm, outside)
    return _stack(adapters, names, hidden, input_tensor, layer_norm, outside)


def bottleneck_forward(self, hidden_states, input_tensor):
    """Instance ``forward`` installed on a BERT-like residual sub-layer."""
    hidden = self.dropout(self.dense(hidden_states))
    return compose(self, hidden, input_tensor, self.LayerNorm)


class BlockAdapters(nn.Module):
    """``attention_adapters`` / ``output_adapters`` child of a pre-norm decoder block."""

    def __init__(self) -> None:
        super().__init__()
        self.adapters = nn.ModuleDict()
        setattr(self, SETUP_ATTR, EMPTY_SETUP)


def _record_residual(container: BlockAdapters):
    def hook(_module, args, kwargs):
        residual = args[0] if args else kwargs.get("hidden_states")
        container.__dict__[RESIDUAL_ATTR] = residual

    return hook


def _adapt_output(container: BlockAdapters):
    def hook(_module, _args, output):
        residual = container.__dict__.pop(RESIDUAL_ATTR, None)
        if residual is None or len(container.adapters) == 0:
            return None
        hidden = output[0] if isinstance(output, tuple) else output
        if residual.shape[0] != hidden.shape[0]:
            raise RuntimeError(f"bottleneck: residual rows {residual.shape[0]} != sub-layer rows {hidden.shape[0]}")
        adapted = compose(container, hidden, residual, None, outside=True)
        return (adapted,) + tuple(output[1:]) if isinstance(output, tuple) else adapted

    return hook


def install(location: Location) -> nn.Module:
    """Make ``location`` ready to hold adapters; returns the module with ``.adapters``."""
    if location.kind == "sublayer":
        module = location.host
        if not hasattr(module, "adapters") or not isinstance(module.adapters, nn.ModuleDict):
            module.adapters = nn.ModuleDict()
            module.forward = types.MethodType(bottleneck_forward, module)
        if not hasattr(module, SETUP_ATTR):
            setattr(module, SETUP_ATTR, EMPTY_SETUP)
        return module
    container = location.container()
    if container is None:
        container = BlockAdapters()
        ref = next(location.host.parameters())
        container.to(device=ref.device, dtype=ref.dtype)
        location.host.add_module(CONTAINER_NAMES[location.where], container)
        norm = getattr(location.host, location.norm)
        sub = getattr(location.host, location.sublayer)
        container.__dict__[HOOKS_ATTR] = [
            norm.register_forward_pre_hook(_record_residual(container), with_kwargs=True),
            sub.register_forward_hook(_adapt_output(container)),
        ]
    return container


def uninstall(location: Location) -> None:
    if location.kind == "sublayer":
        module = location.host
        for attr in ("adapters", "forward", SETUP_ATTR):
            if attr in module.__dict__ or attr in module._modules:
                delattr(module, attr)
        return
    container = location.container()
    if container is None:
        return
    for handle in container.__dict__.pop(HOOKS_ATTR, []):
        handle.remove()
    delattr(location.host, CONTAINER_NAMES[location.where])
