"""LoRA merged into a checkpoint without a model (``adapterhub export``): PEFT's merge maths, per module.

* Linear-like layers: ``lora_A`` [r, in] and ``lora_B`` [out, r] give ``delta = scaling * B @ A``,
  transposed for a layer that stores its weight as ``[in, out]`` (GPT-2's ``Conv1D``, where PEFT
  forces ``fan_in_fan_out``); ``scaling = weight * lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA), with
  ``r`` and ``lora_alpha`` from ``rank_pattern``/``alpha_pattern`` where a key matches the module.
  A trained ``lora_B.bias`` moves the layer's bias by ``scaling * bias`` (``lora_bias``).
* Embeddings: ``lora_embedding_A`` [r, vocab] and ``lora_embedding_B`` [dim, r] give ``(B @ A).T``.
* DoRA (``lora_magnitude_vector`` m): ``W' = m / ||W0 + delta|| * (W + delta)``, the norm taken per
  output row on the base checkpoint's weight ``W0`` (PEFT takes it on the unmerged weight, so a
  DoRA adapter merged after others still normalises against the base) and ``W`` the current value.

Everything is computed in float32 from the adapter's tensors; the exporter rounds once.
"""

from __future__ import annotations

import math
from typing import Any

from adapterhub.plugin import AdapterFiles, AdapterFormatError, MergeSite, ParamUpdate, UnsupportedOperationError
from adapterhub.toolkit.config_guard import check_untrusted_config
from adapterhub.toolkit.peft import layer_orientation, match_pattern_key, shape_problem

#: LoRA variants of PEFT whose merge is not plain LoRA or DoRA (truthy config field -> refused).
UNSUPPORTED_FIELDS = (
    "use_qalora", "alora_invocation_tokens", "arrow_config", "use_bdlora", "velora_config", "monteclora_config",
    "kasa_config", "target_parameters", "trainable_token_indices", "layer_replication", "megatron_config",
)
_LINEAR = {"lora_A.weight", "lora_B.weight", "lora_B.bias", "lora_magnitude_vector"}
_EMBEDDING = {"lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector"}
_CONV_LAYERS = ("Conv1d", "Conv2d", "Conv3d")


def check_config(adapter: AdapterFiles) -> None:
    """Refuse, naming the field, a LoRA whose merge this module does not compute."""
    where = adapter.source or "lora adapter"
    config = adapter.config
    check_untrusted_config(config, where, loading=True)
    for field in UNSUPPORTED_FIELDS:
        if config.get(field):
            raise UnsupportedOperationError(
                f"{where}: adapter_config.json {field}={config[field]!r} is a LoRA variant that cannot be merged "
                "into a checkpoint without a model",
                hint="load it with AdapterModel (or PEFT), merge_and_unload() and save_pretrained()",
            )
    if str(config.get("init_lora_weights", "")).lower() == "mica":
        raise UnsupportedOperationError(f"{where}: MiCA LoRA (init_lora_weights='mica') cannot be merged this way")


def scaling(config: dict[str, Any], module: str, rank: int, weight: float, where: str) -> float:
    """PEFT's ``scaling`` of ``module`` after ``set_scale(weight)``: ``weight * alpha / r`` (rsLoRA: ``sqrt(r)``)."""
    r_key = match_pattern_key(config.get("rank_pattern"), module)
    a_key = match_pattern_key(config.get("alpha_pattern"), module)
    r = config["rank_pattern"][r_key] if r_key is not None else config.get("r", 8)
    alpha = config["alpha_pattern"][a_key] if a_key is not None else config.get("lora_alpha", 8)
    if r != rank:
        raise AdapterFormatError(
            f"{where}: {module} has rank {rank} in its weights but adapter_config.json gives r={r}",
            hint="the config and the weights of this adapter disagree; re-save it with PEFT",
        )
    if config.get("use_rslora"):
        return weight * alpha / math.sqrt(r)
    return weight * alpha / r


def module_updates(adapter: AdapterFiles, module: str, tensors: dict[str, Any], weight: float) -> list[ParamUpdate]:
    where = adapter.source or "lora adapter"
    kinds = set(tensors)
    dora = "lora_magnitude_vector" in kinds
    if dora and weight != 1.0:
        raise UnsupportedOperationError(
            f"{where}: uses DoRA, which can only be merged with weight 1 (DoRA is not linear in its scale), not {weight}"
        )
    if kinds <= _LINEAR and {"lora_A.weight", "lora_B.weight"} <= kinds:
        a, b = tensors["lora_A.weight"], tensors["lora_B.weight"]
        if a.dim() != 2 or b.dim() != 2:
            raise UnsupportedOperationError(
                f"{where}: {module} is a convolution LoRA (lora_A {list(a.shape)}), which cannot be merged into a "
                "checkpoint without a model", hint="load it with AdapterModel, merge_and_unload() and save_pretrained()")
        scale = scaling(adapter.config, module, int(a.shape[0]), weight, where)
        updates = [_linear_update(adapter.config, f"{module}.weight", a, b, scale, tensors.get("lora_magnitude_vector"))]
        if "lora_B.bias" in tensors:
            updates.append(_bias_update(f"{module}.bias", tensors["lora_B.bias"], scale))
        return updates
    if kinds <= _EMBEDDING and {"lora_embedding_A", "lora_embedding_B"} <= kinds:
        a, b = tensors["lora_embedding_A"], tensors["lora_embedding_B"]
        scale = scaling(adapter.config, module, int(a.shape[0]), weight, where)
        return [_embedding_update(f"{module}.weight", a, b, scale, tensors.get("lora_magnitude_vector"))]
    raise AdapterFormatError(
        f"{where}: module {module} has LoRA tensors {sorted(kinds)}, which are not a LoRA this version can merge",
        hint="expected lora_A.weight + lora_B.weight (+ lora_B.bias, lora_magnitude_vector) or "
        "lora_embedding_A + lora_embedding_B",
    )


def _linear_update(config: dict[str, Any], param: str, a: Any, b: Any, scale: float, magnitude: Any) -> ParamUpdate:
    rank, fan_in, fan_out = int(a.shape[0]), int(a.shape[1]), int(b.shape[0])
    if int(b.shape[1]) != rank:
        raise AdapterFormatError(f"{param}: lora_A is {list(a.shape)} but lora_B is {list(b.shape)} (rank differs)")

    def check(shape: tuple[int, ...], layer_type: str) -> str | None:
        if layer_type in _CONV_LAYERS:
            return f"{param} belongs to a {layer_type}, which a LoRA of 2-d matrices cannot target"
        transposed = layer_orientation(layer_type, config)
        expected = (fan_in, fan_out) if transposed else (fan_out, fan_in)
        problem = shape_problem(param, shape, expected, f"a LoRA with in={fan_in}, out={fan_out}"
                                + (" on a Conv1D ([in, out])" if transposed else ""))
        if problem is None and magnitude is not None and tuple(magnitude.shape) != (fan_out,):
            problem = f"{param}: DoRA magnitude has shape {list(magnitude.shape)}, expected [{fan_out}]"
        return problem

    def apply(current: Any, site: MergeSite) -> Any:
        import torch

        delta = (b.to(torch.float32) @ a.to(torch.float32)) * scale
        transposed = layer_orientation(site.layer_type, config)
        if transposed:
            delta = delta.T
        if magnitude is None:
            return current.add_(delta)
        # DoRA: rows in [out, in] orientation, the norm on the base weight plus this delta
        rows = (site.base.T if transposed else site.base) + (delta.T if transposed else delta)
        norm = torch.linalg.norm(rows, dim=1)
        factor = (magnitude.to(torch.float32) / norm).view(-1, 1)
        if transposed:
            factor = factor.T
        return factor * (current + delta)

    return ParamUpdate(param, apply, check)


def _bias_update(param: str, bias: Any, scale: float) -> ParamUpdate:
    shape = tuple(bias.shape)

    def check(checkpoint_shape: tuple[int, ...], layer_type: str) -> str | None:
        return shape_problem(param, checkpoint_shape, shape, "the LoRA's lora_B.bias")

    def apply(current: Any, site: MergeSite) -> Any:
        import torch

        return current.add_(bias.to(torch.float32) * scale)

    return ParamUpdate(param, apply, check)


def _embedding_update(param: str, a: Any, b: Any, scale: float, magnitude: Any) -> ParamUpdate:
    vocab, dim = int(a.shape[1]), int(b.shape[0])

    def check(shape: tuple[int, ...], layer_type: str) -> str | None:
        problem = shape_problem(param, shape, (vocab, dim), f"an embedding LoRA for {vocab} tokens x {dim}")
        if problem is None and magnitude is not None and tuple(magnitude.shape) != (dim,):
            problem = f"{param}: DoRA magnitude has shape {list(magnitude.shape)}, expected [{dim}]"
        return problem

    def apply(current: Any, site: MergeSite) -> Any:
        import torch

        delta = (b.to(torch.float32) @ a.to(torch.float32)).T * scale
        if magnitude is None:
            return current.add_(delta)
        norm = torch.linalg.norm(site.base.T + delta.T, dim=1)  # one norm per embedding dimension
        factor = (magnitude.to(torch.float32) / norm).view(1, -1)
        return factor * (current + delta)

    return ParamUpdate(param, apply, check)
