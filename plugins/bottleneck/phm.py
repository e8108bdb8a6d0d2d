"""Parameterized hypercomplex multiplication (PHM) layers: the linear maps of Compacter adapters.

A PHM layer of ``phm_dim`` = n maps ``in`` to ``out`` features with the matrix

    H = sum_i  kron(C_i, W_i)          C_i: [n, n] ("phm_rule"),  W_i: [in/n, out/n]

and computes ``y = x @ H + b``. ``W_i`` is stored whole (``W``) or as a rank-``phm_rank`` product
``W_left[i] @ W_right[i]`` (``factorized_phm_W``); ``C_i`` likewise whole (``phm_rule``) or as
``phm_rule_left[i] @ phm_rule_right[i]`` (``factorized_phm_rule``). With ``shared_phm_rule`` the rule
and with ``shared_W_phm`` the W factors belong to the adapter as a whole (every layer uses the same
ones; W per direction: ``W_down_*`` / ``W_up_*``); the adapters format saves them as
``shared_parameters.<adapter>.<param>``, canonical here as ``shared_parameters.<param>``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

W_INITS = ("phm", "glorot-normal", "glorot-uniform", "normal")


def check_phm_config(config: dict, sizes: list[int]) -> str | None:
    """Why this config cannot build PHM layers for these feature sizes, or None."""
    n = int(config["phm_dim"])
    if config["hypercomplex_nonlinearity"] not in W_INITS:
        return f"hypercomplex_nonlinearity {config['hypercomplex_nonlinearity']!r} is not one of {W_INITS}"
    if config["phm_c_init"] not in ("normal", "uniform"):
        return f"phm_c_init {config['phm_c_init']!r} is not 'normal' or 'uniform'"
    if config["shared_W_phm"] and not config["factorized_phm_W"]:
        return "shared_W_phm with factorized_phm_W=false (adapters 1.3.0 cannot build it either)"
    if config["shared_W_phm"] and isinstance(config["reduction_factor"], dict):
        return "shared_W_phm needs one reduction_factor for all layers, not a per-layer mapping"
    for size in sizes:
        if n <= 0 or size % n:
            return f"feature size {size} is not divisible by phm_dim {n}"
    return None


def _rule_shapes(n: int, factorized: bool) -> dict[str, tuple[int, ...]]:
    if factorized:
        return {"phm_rule_left": (n, n, 1), "phm_rule_right": (n, 1, n)}
    return {"phm_rule": (n, n, n)}


def _w_shapes(n: int, fin: int, fout: int, rank: int, factorized: bool, prefix: str = "W") -> dict:
    if factorized:
        return {f"{prefix}_left": (n, fin // n, rank), f"{prefix}_right": (n, rank, fout // n)}
    return {prefix: (n, fin // n, fout // n)}


def _init_w(tensors: list[torch.Tensor], kind: str, init_range: float) -> None:
    for t in tensors:
        if kind == "normal":
            nn.init.normal_(t, std=init_range)
            continue
        for block in t:  # each of the n blocks is its own matrix
            if kind == "glorot-normal":
                nn.init.xavier_normal_(block)
            elif kind == "glorot-uniform":
                nn.init.xavier_uniform_(block)
            else:  # "phm": the fan-in uniform init of a plain Linear layer
                nn.init.kaiming_uniform_(block, a=math.sqrt(5))


def _init_rule(tensors: list[torch.Tensor], c_init: str, std: float) -> None:
    for t in tensors:
        if c_init == "uniform":
            nn.init.uniform_(t, -std, std)
        else:
            nn.init.normal_(t, std=std)


def _register(module: nn.Module, shapes: dict[str, tuple[int, ...]], learn_phm: bool) -> None:
    for key, shape in shapes.items():
        # learn_phm=false freezes the rule only; W always trains.
        trainable = learn_phm or not key.startswith("phm_rule")
        module.register_parameter(key, nn.Parameter(torch.empty(shape), requires_grad=trainable))


class SharedPHM(nn.Module):
    """The parameters one Compacter adapter shares across all its layers."""

    def __init__(self, config: dict, hidden: int) -> None:
        super().__init__()
        self.config = config
        n, rank = int(config["phm_dim"]), int(config["phm_rank"])
        shapes: dict[str, tuple[int, ...]] = {}
        if config["shared_W_phm"]:
            down = int(hidden // config["reduction_factor"])
            shapes.update(_w_shapes(n, hidden, down, rank, True, "W_down"))
            shapes.update(_w_shapes(n, down, hidden, rank, True, "W_up"))
        if config["shared_phm_rule"]:
            shapes.update(_rule_shapes(n, config["factorized_phm_rule"]))
        _register(self, shapes, bool(config["learn_phm"]))

    def init_weights(self) -> None:
        with torch.no_grad():
            _init_w([p for k, p in self.named_parameters() if k.startswith("W_")],
                    self.config["hypercomplex_nonlinearity"], float(self.config["phm_init_range"]))
            _init_rule([p for k, p in self.named_parameters() if k.startswith("phm_rule")],
                       self.config["phm_c_init"], float(self.config["phm_init_range"]))


class PHMLinear(nn.Module):
    """``x @ sum_i kron(C_i, W_i) + b``; parameter names as ``adapters`` saves them."""

    def __init__(self, in_features: int, out_features: int, position: str, config: dict,
                 shared: SharedPHM | None) -> None:
        super().__init__()
        self.config = config
        self.in_features, self.out_features, self.position = in_features, out_features, position
        n, rank = int(config["phm_dim"]), int(config["phm_rank"])
        own: dict[str, tuple[int, ...]] = {}
        if not config["shared_W_phm"]:
            own.update(_w_shapes(n, in_features, out_features, rank, config["factorized_phm_W"]))
        if not config["shared_phm_rule"]:
            own.update(_rule_shapes(n, config["factorized_phm_rule"]))
        _register(self, own, bool(config["learn_phm"]))
        self.b = nn.Parameter(torch.zeros(out_features)) if config["phm_bias"] else None
        # Not a registered child: the shared parameters are saved once per adapter, not per layer.
        self.__dict__["shared"] = shared

    def _param(self, key: str) -> torch.Tensor:
        return self._parameters[key] if key in self._parameters else getattr(self.shared, key)

    def weight_blocks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(rules C [n, n, n], W [n, in/n, out/n])."""
        cfg = self.config
        w_name = f"W_{self.position}" if cfg["shared_W_phm"] else "W"
        if cfg["factorized_phm_W"]:
            w = torch.bmm(self._param(f"{w_name}_left"), self._param(f"{w_name}_right"))
        else:
            w = self._param(w_name)
        if cfg["factorized_phm_rule"]:
            rule = torch.bmm(self._param("phm_rule_left"), self._param("phm_rule_right"))
        else:
            rule = self._param("phm_rule")
        return rule, w

    def matrix(self) -> torch.Tensor:
        """H [in, out] with H[a*p + c, b*q + e] = sum_i C_i[a, b] * W_i[c, e]."""
        rule, w = self.weight_blocks()
        n, p, q = w.shape
        blocks = rule[:, :, None, :, None] * w[:, None, :, None, :]  # [i, a, c, b, e]
        return blocks.sum(0).reshape(n * p, n * q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.matmul(x, self.matrix().to(x.dtype))
        return y + self.b if self.b is not None else y

    def init_weights(self) -> None:
        with torch.no_grad():
            _init_w([p for k, p in self.named_parameters() if k.startswith("W")],
                    self.config["hypercomplex_nonlinearity"], float(self.config["phm_init_range"]))
            _init_rule([p for k, p in self.named_parameters() if k.startswith("phm_rule")],
                       self.config["phm_c_init"], 0.01)
            if self.b is not None:
                self.b.zero_()
