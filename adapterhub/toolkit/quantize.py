"""4-bit quantisation of a small model's Linear layers on CPU (bitsandbytes), for QLoRA tests and demos."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

DEFAULT_SKIP = ("lm_head", "score", "classifier", "qa_outputs")


class _OptionalBf16KernelNotice(logging.Filter):
    """Drop bitsandbytes' notice that its optional AVX512-BF16 CPU kernel could not be fetched.

    bitsandbytes logs it at import on CPUs with AVX512-BF16 when the ``kernels`` package (which would
    download the kernel from a Hub) is absent. adapterhub never uses that kernel: it keeps every 4-bit
    layer on the portable fp32 path (:func:`disable_cpu_bf16_kernel`), whose results do not depend
    on the machine. Every other bitsandbytes message still shows.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward")


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_OptionalBf16KernelNotice())


def is_4bit_layer(module: Any) -> bool:
    return type(module).__name__ == "Linear4bit"


def has_4bit_layers(model: Any) -> bool:
    """Cheap test that needs no bitsandbytes import: any ``Linear4bit`` module in ``model``.

    Uses the runtime's cached module list (method detection asks this on every load)."""
    from .structure import all_modules

    return any(is_4bit_layer(m) for m in all_modules(model))


def quantization_config(model: Any) -> dict[str, Any] | None:
    """The 4-bit settings of ``model``'s ``Linear4bit`` layers, in transformers' ``BitsAndBytesConfig``
    keys (``quant_method``, ``load_in_4bit``, ``bnb_4bit_quant_type``), or None without such layers."""
    from .structure import all_modules

    for module in all_modules(model):
        if is_4bit_layer(module):
            weight = module.weight
            state = getattr(weight, "quant_state", None)
            kind = getattr(weight, "quant_type", None) or getattr(state, "quant_type", None)
            config: dict[str, Any] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
            if kind:
                config["bnb_4bit_quant_type"] = str(kind)
            return config
    return None


def disable_cpu_bf16_kernel(model: Any) -> None:
    """Keep bitsandbytes on its portable fp32 CPU path.

    On CPUs with AVX512-BF16, ``Linear4bit`` switches at its first forward to a bf16 kernel (about 3e-3
    off, machine dependent) and repacks its weight into a CPU-only layout. Setting the flag before the
    first forward keeps results equal to an fp32 model with the dequantised weights.
    """
    from .structure import all_modules

    for module in all_modules(model):
        if is_4bit_layer(module):
            module.support_avx512bf16_for_cpu = False


def import_bitsandbytes() -> Any:
    """``bitsandbytes``, or a clear error naming the extra that installs it."""
    try:
        import bitsandbytes
        import bitsandbytes.functional  # noqa: F401 - the submodule every 4-bit path uses
    except ImportError as exc:
        from ..errors import MissingDependencyError

        raise MissingDependencyError(
            f"4-bit quantisation and QLoRA need bitsandbytes, which cannot be imported ({exc})",
            hint="pip install 'adapterhub[qlora]' (bitsandbytes 0.47 or newer; it runs on the CPU too)",
        ) from None
    return bitsandbytes


def quantize_4bit(
    model: Any,
    quant_type: str = "nf4",
    *,
    skip: Iterable[str] = DEFAULT_SKIP,
    blocksize: int = 64,
    compute_dtype: Any = None,
) -> Any:
    """Replace every ``nn.Linear`` (except modules whose name ends with one of ``skip``) by a CPU
    ``bnb.nn.Linear4bit`` holding the quantised weight. Modifies ``model`` in place and returns it."""
    bnb = import_bitsandbytes()
    import torch

    compute_dtype = compute_dtype or torch.float32
    skip = tuple(skip)
    for name, module in list(model.named_modules()):
        if type(module) is not torch.nn.Linear or name.split(".")[-1] in skip:
            continue
        layer = bnb.nn.Linear4bit(
            module.in_features,
            module.out_features,
            bias=module.bias is not None,
            compute_dtype=compute_dtype,
            quant_type=quant_type,
            device="meta",
        )
        layer.weight = bnb.nn.Params4bit(
            module.weight.detach().to("cpu", torch.float32),
            requires_grad=False,
            quant_type=quant_type,
            blocksize=blocksize,
        ).to("cpu")
        if module.bias is not None:
            layer.bias = torch.nn.Parameter(module.bias.detach().clone(), requires_grad=False)
        layer.support_avx512bf16_for_cpu = False
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
    from .structure import forget_structure

    forget_structure(model)  # modules were replaced: cached module lists are stale
    return model
