"""Injecting a PEFT tuner adapter into a model as one transaction, and taking it out again.

``inject_adapter_in_model`` and ``set_peft_model_state_dict`` do the work; on any failure the
half-injected adapter is purged, so the model is left as it was (the runtime checks that).
"""

from __future__ import annotations

import warnings
from typing import Any

from ...errors import IncompatibleBaseModelError
from ...plugin.contract import AdapterFiles
from ..config_guard import check_untrusted_config
from ..structure import forget_structure


def owns_param(param_name: str, adapter: str) -> bool:
    """Whether a PEFT parameter name (``...lora_A.<adapter>.weight``) belongs to ``adapter``."""
    return f".{adapter}." in f".{param_name}."


class PeftInjection:
    """apply/create and purging (mixed into :class:`~.method.PeftTunerMethod`)."""

    def apply(self, model: Any, name: str, adapter: AdapterFiles) -> None:
        state = adapter.state_dict
        if adapter.extras.get("key_root") == "base_model":  # AdapterHub-format keys: relative to the bare base
            from ..adapters_format.layout import rebase_keys

            state = rebase_keys(state, model)
        self._inject(model, name, adapter.config, state, source=adapter.source)

    def create(self, model: Any, name: str, config: dict[str, Any]) -> AdapterFiles:
        self._inject(model, name, config, None, source=None, inference_mode=False)
        return self.export(model, name)

    def _inject(
        self,
        model: Any,
        name: str,
        config: dict[str, Any],
        state_dict: dict[str, Any] | None,
        *,
        source: str | None,
        inference_mode: bool = True,
    ) -> None:
        from peft import inject_adapter_in_model, set_peft_model_state_dict

        where = source or "adapter"
        check_untrusted_config(config, where, loading=state_dict is not None)
        peft_config = self.peft_config(config, inference_mode=inference_mode)
        forget_structure(model)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*Already found a `peft_config`.*")
                warnings.filterwarnings("ignore", message=".*Adapter name .* should not be contained.*")
                try:
                    inject_adapter_in_model(peft_config, model, adapter_name=name)
                except ValueError as exc:
                    raise IncompatibleBaseModelError(
                        f"{where} cannot be injected into {type(model).__name__}: {exc}") from None
            if state_dict is not None:
                state_dict = self.drop_unchanged_base_tensors(model, state_dict, where)
                try:
                    result = set_peft_model_state_dict(model, state_dict, adapter_name=name)
                except RuntimeError as exc:  # size mismatch from load_state_dict
                    raise IncompatibleBaseModelError(f"{where}: {exc}") from None
                unexpected = list(result.unexpected_keys)
                missing = [k for k in result.missing_keys if owns_param(k, name)]
                if unexpected or missing:
                    raise IncompatibleBaseModelError(
                        f"{where} does not match the modules its config targets: "
                        + (f"tensors with no place in the model: {unexpected[:3]}; " if unexpected else "")
                        + (f"adapter parameters missing from the file: {missing[:3]}" if missing else ""),
                        hint="check target_modules in adapter_config.json against the weights",
                    )
        except BaseException:
            self._purge(model, name)
            raise
        finally:
            forget_structure(model)

    def _purge(self, model: Any, name: str) -> None:
        """Delete ``name`` from every layer and config; restore base modules no adapter uses any more."""
        self.reset_activation(model)
        self.forget_rows_adapter(model, name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for layer in list(self.layers(model, name)):
                layer.delete_adapter(name)
            for wrapper in list(self._aux_wrappers(model, [name])):
                wrapper.delete_adapter(name, new_active_adapters=[])
        configs = getattr(model, "peft_config", None)
        if isinstance(configs, dict):
            configs.pop(name, None)
        self._strip_empty(model)
        forget_structure(model)
        if isinstance(configs, dict) and not configs:
            del model.peft_config

    def _strip_empty(self, model: Any) -> None:
        from peft.utils.other import AuxiliaryTrainingWrapper

        layer_cls = self._layer_cls()
        for module_name, module in list(model.named_modules()):
            if not module_name:
                continue
            if isinstance(module, layer_cls) and not any(len(getattr(module, a)) for a in module.adapter_layer_names):
                replacement = module.base_layer
            elif isinstance(module, AuxiliaryTrainingWrapper) and not module._adapters:
                replacement = module.original_module
            else:
                continue
            parent_name, _, child = module_name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, replacement)
