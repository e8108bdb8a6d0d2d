"""Torch side of the bottleneck method: the adapter module and the patched sub-layer forward.

Injection points are BERT-like residual sub-layers (``BertSelfOutput`` after attention and
``BertOutput`` after the feed-forward block; RoBERTa, ELECTRA, ... share the structure):
``output = LayerNorm(dropout(dense(h)) + input)``. Each gets a ``ModuleDict`` named ``adapters``
(so weight keys read ``encoder.layer.0.output.adapters.<name>.adapter_up.weight``, as in the
``adapters`` library) and an instance-level ``forward`` that composes the active adapters the way
``adapters`` 1.3.0 does (pre_forward / adapter / post_forward).
"""

from __future__ import annotations

import math
import re
import types

import torch
from torch import nn

LOCATION_RE = re.compile(r"(?:^|\.)layer\.(?P<idx>\d+)\.(?P<where>attention\.output|output)$")
SETUP_ATTR = "_adapterhub_bn_setup"


def find_locations(base: nn.Module) -> list[tuple[str, int, str, nn.Module]]:
    """(path, layer index, "mh"|"output", module) for every BERT-like residual sub-layer."""
    found = []
    for path, module in base.named_modules():
        m = LOCATION_RE.search(path)
        if not m:
            continue
        if not all(hasattr(module, a) for a in ("dense", "dropout", "LayerNorm")):
            continue
        where = "mh" if m["where"] == "attention.output" else "output"
        found.append((path, int(m["idx"]), where, module))
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

    def __init__(self, hidden: int, down: int, config: dict) -> None:
        super().__init__()
        self.config = config
        self.is_parallel = bool(config["is_parallel"])
        seq: list[nn.Module] = []
        if config["ln_before"]:
            self.adapter_norm_before = nn.LayerNorm(hidden)
            seq.append(self.adapter_norm_before)
        seq.append(nn.Linear(hidden, down))
        seq.append(Activation(config["non_linearity"]))
        self.adapter_down = nn.Sequential(*seq)
        self.adapter_up = nn.Linear(down, hidden)
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
        with torch.no_grad():
            if kind == "mam_adapter":
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

    def post_forward(self, hidden, input_hidden, input_tensor, layer_norm):
        if self.is_parallel:
            hidden = hidden + input_hidden
        if self.config["original_ln_after"]:
            hidden = hidden + input_tensor
            if layer_norm is not None:
                hidden = layer_norm(hidden)
        return hidden


def _plain(hidden, input_tensor, layer_norm):
    return layer_norm(hidden + input_tensor)


def _stack(adapters, names, hidden, input_tensor, layer_norm):
    present = [n for n in names if n in adapters]
    if not present:
        return _plain(hidden, input_tensor, layer_norm)
    input_hidden = hidden
    # adapters 1.3.0 compose_stack: each child re-runs pre_forward (LayerNorm(h + input)).
    for name in present:
        hidden, residual = adapters[name].pre_forward(hidden, input_tensor, layer_norm)
        hidden = adapters[name](hidden, residual)
    return adapters[present[-1]].post_forward(hidden, input_hidden, input_tensor, layer_norm)


def _average(adapters, names, weights, hidden, input_tensor, layer_norm):
    pairs = [(n, w) for n, w in zip(names, weights) if n in adapters]
    if not pairs:
        return _plain(hidden, input_tensor, layer_norm)
    input_hidden = hidden
    first = adapters[pairs[0][0]]
    hidden, residual = first.pre_forward(hidden, input_tensor, layer_norm)
    outs = torch.stack([adapters[n](hidden, residual) * w for n, w in pairs], 0)
    # adapters' mean(): mean over children of the weighted outputs (residual included).
    return first.post_forward(outs.mean(0), input_hidden, input_tensor, layer_norm)


def bottleneck_forward(self, hidden_states, input_tensor):
    """Instance ``forward`` installed on a BERT-like residual sub-layer."""
    hidden = self.dropout(self.dense(hidden_states))
    mode, names, weights, sizes = getattr(self, SETUP_ATTR, ("stack", (), None, None))
    adapters = self.adapters
    if mode == "average":
        return _average(adapters, names, weights, hidden, input_tensor, self.LayerNorm)
    if mode == "batch_split":
        outs, start = [], 0
        for name, size in zip(names, sizes):
            sl = slice(start, start + size)
            start += size
            if size == 0:
                continue
            outs.append(_stack(adapters, [name] if name else [], hidden[sl], input_tensor[sl], self.LayerNorm))
        if start != hidden.shape[0]:
            raise ValueError(f"BatchSplit batch_sizes sum to {start} but the batch has {hidden.shape[0]} rows")
        return torch.cat(outs, 0)
    return _stack(adapters, names, hidden, input_tensor, self.LayerNorm)


def install(module: nn.Module) -> None:
    if not hasattr(module, "adapters") or not isinstance(module.adapters, nn.ModuleDict):
        module.adapters = nn.ModuleDict()
        module.forward = types.MethodType(bottleneck_forward, module)


def uninstall(module: nn.Module) -> None:
    for attr in ("adapters", "forward", SETUP_ATTR):
        if attr in module.__dict__ or attr in module._modules:
            delattr(module, attr)
