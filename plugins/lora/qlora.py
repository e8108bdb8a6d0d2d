"""QLoRA: PEFT LoRA files on a base whose Linear layers are bitsandbytes ``Linear4bit``.

Merging dequantises the 4-bit weight, adds the LoRA delta and quantises again into a new parameter;
the original quantised parameter is kept, so unmerge restores it bit for bit. (PEFT's own in-place
merge on CPU reads the CPU-repacked layout as if it were the standard one and corrupts the model.)

Saved, a QLoRA adapter is a plain PEFT LoRA plus a README.md that records the 4-bit settings it was
trained against, in the block PEFT's ``save_pretrained`` used to write ("The following
`bitsandbytes` quantization config was used during training: ..."), so that ``adapterhub export``
can note, when it merges the adapter into the full-precision base, that it was trained on quantized
weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapterhub.plugin import FLOAT_DTYPES, QUANTIZED_DTYPES, AdapterFiles, UnsupportedOperationError
from adapterhub.toolkit.quantize import (
    disable_cpu_bf16_kernel,
    has_4bit_layers,
    import_bitsandbytes,
    is_4bit_layer,
    quantization_config,
)

from .method import LoraMethod


class QLoraMethod(LoraMethod):
    name = "qlora"
    description = "LoRA on a bitsandbytes 4-bit (nf4/fp4) base; merge re-quantises, unmerge is exact"
    priority = 10
    formats = ("peft",)
    # A QLoRA file may carry bitsandbytes' packed 4-bit / int8 weights (of modules saved whole); its
    # LoRA factors are floating point like any LoRA's.
    tensor_dtypes = FLOAT_DTYPES | QUANTIZED_DTYPES

    def allowed_dtypes(self, key: str) -> frozenset[str]:
        return FLOAT_DTYPES if "lora_" in key else self.tensor_dtypes

    def detect(self, config: dict[str, Any], files: set[str], model: Any = None) -> bool:
        return (
            model is not None
            and str(config.get("peft_type", "")).upper() == "LORA"
            and has_4bit_layers(model)
        )

    def apply(self, model: Any, name: str, adapter: Any) -> None:
        super().apply(model, name, adapter)
        disable_cpu_bf16_kernel(model)

    def create(self, model: Any, name: str, config: dict[str, Any]) -> Any:
        files = super().create(model, name, config)
        disable_cpu_bf16_kernel(model)
        return files

    def export(self, model: Any, name: str) -> AdapterFiles:
        files = super().export(model, name)
        files.extras["quantization"] = quantization_config(model)
        return files

    def save(self, adapter: AdapterFiles, path: Path, *, format: str | None = None) -> list[Path]:
        written = super().save(adapter, path, format=format)
        settings = adapter.extras.get("quantization")
        readme = Path(path) / "README.md"
        if settings and not readme.exists():
            lines = ["## Training procedure", "", "The following `bitsandbytes` quantization config was used during "
                     "training:", *(f"- {k}: {v}" for k, v in settings.items()), ""]
            readme.write_text("\n".join(lines), encoding="utf-8")
            written.append(readme)
        return written

    def merge(self, model: Any, name: str, weight: float = 1.0) -> None:
        if self._dora(model, name):
            raise UnsupportedOperationError(f"qlora adapter {name!r} uses DoRA; merging DoRA into 4-bit weights is not supported")
        super().merge(model, name, weight)

    def copy_parameter(self, param: Any) -> Any:
        if type(param).__name__ == "Params4bit":
            return param  # merge_layer replaces it with a new parameter; the original stays untouched
        return super().copy_parameter(param)

    def merge_layer(self, layer: Any, name: str, weight: float) -> None:
        base = layer.get_base_layer()
        if not is_4bit_layer(base):
            super().merge_layer(layer, name, weight)
            return
        import torch

        bnb = import_bitsandbytes()
        old = layer.scaling.get(name)
        layer.set_scale(name, weight)
        try:
            delta = layer.get_delta_weight(name)
        finally:
            layer.scaling[name] = old
        param = base.weight
        dense = dequantize(param)
        merged = (dense.to(torch.float32) + delta.to(torch.float32)).to(dense.dtype)
        quant_state = param.quant_state
        new = bnb.nn.Params4bit(
            merged.to("cpu"),
            requires_grad=False,
            quant_type=quant_state.quant_type,
            blocksize=quant_state.blocksize,
            compress_statistics=getattr(param, "compress_statistics", False),
            quant_storage=getattr(param, "quant_storage", torch.uint8),
        )
        base.weight = new.to(param.device)
        if getattr(layer, "lora_bias", {}).get(name, False) and base.bias is not None:
            base.bias = torch.nn.Parameter(base.bias.detach() + layer.lora_B[name].bias.detach() * layer.scaling[name] * weight, requires_grad=False)
        base.support_avx512bf16_for_cpu = False
        layer.merged_adapters.append(name)


def dequantize(param: Any) -> Any:
    """The dense weight of a ``Params4bit``, whichever CPU layout it is in (does not modify ``param``)."""
    F = import_bitsandbytes().functional

    data, quant_state = param.data, param.quant_state
    if getattr(quant_state, "packing_format_for_cpu", False):
        import copy

        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

        data, quant_state = _convert_weight_packed_for_cpu_inverse(data.clone(), copy.deepcopy(quant_state))
    return F.dequantize_4bit(data, quant_state)
