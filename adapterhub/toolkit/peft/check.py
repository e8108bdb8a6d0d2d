"""Checking a PEFT tuner adapter against a model before anything is injected (the model is not touched)."""

from __future__ import annotations

import warnings
from typing import Any

from ...errors import AdapterFormatError, IncompatibleBaseModelError
from ...plugin.records import AdapterFiles


class PeftChecks:
    """check/check_tensor/base_module (mixed into :class:`~.method.PeftTunerMethod`)."""

    peft_type: str
    name: str
    #: other spellings users try, and the option they mean (``{"rank": "r"}``), for error messages
    option_aliases: dict[str, str] = {}

    def check_options(self, config: dict[str, Any]) -> None:
        """Refuse an option PEFT's config class for this type does not have (a typo would be ignored)."""
        from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
        from peft.utils import PeftType

        from ..options import check_options, dataclass_options

        config_cls = PEFT_TYPE_TO_CONFIG_MAPPING[PeftType(self.peft_type)]
        check_options(self.name, config, dataclass_options(config_cls), aliases=self.option_aliases)

    def peft_config(self, config: dict[str, Any], *, inference_mode: bool = True) -> Any:
        """Build PEFT's config object (unknown keys from newer PEFT versions are dropped by PEFT)."""
        from peft import PeftConfig

        kwargs = {k: v for k, v in config.items() if k not in {"peft_version"}}
        kwargs["peft_type"] = self.peft_type
        kwargs["inference_mode"] = inference_mode
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return PeftConfig.from_peft_type(**kwargs)
            except (TypeError, ValueError) as exc:
                raise AdapterFormatError(f"invalid {self.peft_type} config: {exc}") from None

    def base_module(self, model: Any, path: str) -> Any:
        """The module at ``path``, looking through layers injected by earlier adapters.

        Walks the registered submodules (``_modules``) directly: what ``get_submodule`` finds for a
        state-dict key, without its attribute lookups (``check`` asks this for every tensor).
        """
        module = model
        for part in path.split(".") if path else ():
            module = module._modules.get(part)
            if module is None:
                return None
        base = module._modules.get("base_layer")
        while base is not None:
            module, base = base, base._modules.get("base_layer")
        original = module._modules.get("original_module")  # PEFT's modules_to_save wrapper
        return module if original is None else original

    def check(self, model: Any, adapter: AdapterFiles) -> None:
        if adapter.static_head:
            from ..adapters_format.heads import check_static_head

            # A saved lm_head/static head must be the model's own: adapterhub never overwrites base weights.
            check_static_head(model, adapter)
        problems: list[str] = []
        state = adapter.state_dict
        if adapter.extras.get("key_root") == "base_model":  # AdapterHub-format keys: relative to the bare base
            from ..adapters_format.layout import rebase_keys

            state = rebase_keys(state, model)
        for key, tensor in state.items():
            problem = self.check_tensor(model, adapter, key, tuple(tensor.shape))
            if problem:
                problems.append(problem)
        if problems:
            where = adapter.source or "adapter"
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            from ..model_fit import mismatch_hint

            base = adapter.config.get("base_model_name_or_path")
            raise IncompatibleBaseModelError(
                f"{where} does not fit {type(model).__name__}: " + "; ".join(problems[:3]) + more,
                hint=mismatch_hint(model, adapter) or "the adapter was trained for a different base model"
                + (f" (its config names {base})" if base else "; check base_model_name_or_path"),
            )

    def check_tensor(self, model: Any, adapter: AdapterFiles, key: str, shape: tuple[int, ...]) -> str | None:
        """A message when tensor ``key`` cannot go on ``model``; default: full tensors of saved modules."""
        module_path, _, param = key.rpartition(".")
        module = self.base_module(model, module_path)
        if module is None:
            return f"module {module_path!r} (for {key}) not found in the model"
        current = getattr(module, param, None)
        if current is None or not hasattr(current, "shape"):
            return f"module {module_path!r} ({type(module).__name__}) has no tensor {param!r} (for {key})"
        if tuple(current.shape) != shape:
            return (
                f"module {module_path!r} ({type(module).__name__}): {param} has shape {tuple(current.shape)} "
                f"but the adapter's {key} has shape {shape}"
            )
        return None

    def drop_unchanged_base_tensors(self, model: Any, state_dict: dict[str, Any], where: str) -> dict[str, Any]:
        """PEFT may save whole base embeddings (``...base_layer.weight``); accept them only when unchanged."""
        import torch

        out = {}
        for key, tensor in state_dict.items():
            if ".base_layer." not in key:
                out[key] = tensor
                continue
            module_path, _, param = key.replace(".base_layer.", ".", 1).rpartition(".")
            module = self.base_module(model, module_path)
            if module is not None and param not in module._parameters and param not in module._buffers:
                out[key] = tensor  # not a base tensor: an adapter layer PEFT nested in another (tied weights)
                continue
            current = getattr(module, param, None) if module is not None else None
            if current is None or tuple(current.shape) != tuple(tensor.shape) or not torch.equal(
                current.detach().cpu(), tensor.to(current.dtype)
            ):
                raise IncompatibleBaseModelError(
                    f"{where}: carries a modified base tensor {key}; applying it would change the base model",
                    hint="resize the base model's embeddings first or use the base the adapter was trained on",
                )
        return out
