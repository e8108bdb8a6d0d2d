"""Injecting a PEFT tuner adapter into a model as one transaction, and taking it out again.

``inject_adapter_in_model`` and ``set_peft_model_state_dict`` do the work; on any failure the
half-injected adapter is purged, so the model is left as it was (the runtime checks that). A method
with ``keeps_tuner`` keeps PEFT's tuner object per model instead and adds adapters to it as
``PeftModel`` does (:mod:`.tuner_object`), for tuners with state shared between their layers.
Loading a file never changes a base weight: injection is checked for that, and refused if it did.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from typing import Any

from ...errors import AdapterHubError, IncompatibleBaseModelError
from ...plugin.records import AdapterFiles
from ..config_guard import AllocationGuard, allocation_bound, check_untrusted_config
from ..structure import forget_structure, structure_edit, walk_modules
from . import tuner_object
from .isolate import others_hidden, unhidden
from .files import OWNED_TENSORS, PEFT_PREFIX




def owns_param(param_name: str, adapter: str, markers: tuple[str, ...] | None = None) -> bool:
    """Whether a PEFT parameter name (``...lora_A.<adapter>.weight``, ``...ia3_l.<adapter>``) belongs
    to ``adapter``.

    ``markers`` are the prefixes of the attributes that hold a method's adapters (``lora_``,
    ``ia3_l``; ``modules_to_save`` always counts). Given, the adapter's name counts only as the segment
    right after such an attribute, so an adapter named ``bias`` or ``weight`` owns neither a base
    parameter (``dense.bias``) nor another adapter's (``lora_B.default.bias``). Without markers, any
    segment equal to the name counts.
    """
    parts = param_name.split(".")
    if markers is None:
        return adapter in parts
    return any(part == adapter and (parts[i - 1] == "modules_to_save" or parts[i - 1].startswith(markers))
               for i, part in enumerate(parts) if i)


def _saved_twice(key: str, state_dict: dict[str, Any]) -> bool:
    """Whether ``key`` (``...lm_head.base_layer.<tensor>``) is a copy PEFT saved of a tied layer's
    tensor that the file also holds under its plain key: PEFT nests a second layer into a tied one
    when a second adapter is added, saves through both, and ignores the copy where there is no nest."""
    key = key.removeprefix(PEFT_PREFIX)
    twin = state_dict.get(key.replace(".base_layer.", ".", 1)) if ".base_layer." in key else None
    return twin is not None and key in state_dict and bool((twin == state_dict[key]).all())


def _restore_modules(model: Any, modules: list[tuple[str, Any]]) -> None:
    """Put every module of the ``walk_modules`` snapshot back at its path (parents before children)."""
    owner = dict(modules)
    for path, module in modules:
        if not path:
            continue
        parent_path, _, child = path.rpartition(".")
        parent = owner[parent_path]
        if parent._modules.get(child) is not module:
            parent._modules[child] = module
    forget_structure(model)


class PeftInjection:
    """apply/create and purging (mixed into :class:`~.method.PeftTunerMethod`)."""

    keeps_tuner: bool

    def apply(self, model: Any, name: str, adapter: AdapterFiles) -> None:
        state = adapter.state_dict
        if adapter.extras.get("key_root") == "base_model":  # AdapterHub-format keys: relative to the bare base
            from ..adapters_format.layout import rebase_keys

            state = rebase_keys(state, model)
        # Tensors made for this adapter alone (a combination's result) become its parameters as they
        # are: PEFT builds the layers empty (meta) and takes the tensors, instead of initialising
        # layers only to copy over them.
        self._inject(model, name, adapter.config, state, source=adapter.source,
                     tuner_state=adapter.extras.get("tuner_state"), assign=bool(adapter.extras.get(OWNED_TENSORS)))

    def create(self, model: Any, name: str, config: dict[str, Any]) -> AdapterFiles:
        self.check_options(config)
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
        tuner_state: dict[str, Any] | None = None,
        assign: bool = False,
    ) -> None:
        where = source or "adapter"
        check_untrusted_config(config, where, loading=state_dict is not None)
        if tuner_state and not self.keeps_tuner:
            raise IncompatibleBaseModelError(
                f"{where} holds tensors outside the model that method {self.name!r} has no place for: "
                f"{sorted(tuner_state)[:3]}")
        peft_config = self.peft_config(config, inference_mode=inference_mode)
        self.inject_with(model, name, lambda: self._inject_visible(model, name, peft_config, state_dict, where,
                                                                   tuner_state, assign))

    def inject_with(self, model: Any, name: str, work: Callable[[], None]) -> None:
        """Run ``work()``, which puts adapter ``name`` on ``model`` through PEFT (``inject_adapter_in_model``
        and its tensors), as loading does: the adapters already in this method's layers are hidden from
        PEFT's walks meanwhile (:func:`~.isolate.others_hidden`: the 64th adapter costs what the 2nd
        does); a failure purges ``name`` and puts every module back; a success that only added modules
        keeps the cached module walk and fingerprint current."""
        hidden = [] if self.keeps_tuner else list(self.layers(model))
        modules: list[tuple[str, Any]] = []
        originals: dict[int, Any] = {}
        with structure_edit(model) as edit:
            try:
                with others_hidden(hidden) as originals:
                    modules = walk_modules(model)  # what a failure puts back, whatever PEFT replaced or nested
                    work()
                    after = walk_modules(model)
            except BaseException:
                forget_structure(model)
                self._purge(model, name)
                _restore_modules(model, unhidden(modules, originals))
                raise
            report = _additions(modules, after, originals)
            if report is not None:  # the cached walk and fingerprint take the new modules in
                edit.commit(added=report[0], touched=report[1])

    def _inject_visible(self, model: Any, name: str, peft_config: Any, state_dict: dict[str, Any] | None,
                        where: str, tuner_state: dict[str, Any] | None, assign: bool) -> None:
        """PEFT's injection and loading of ``name``, and the checks of what they did (see ``_inject``)."""
        from peft import inject_adapter_in_model, set_peft_model_state_dict

        base = tuner_object.base_weights(model) if state_dict is not None else None
        guard: Any = contextlib.nullcontext()
        if state_dict is not None:  # sizes in a file's config are bounded by the file and the model
            numel = sum(int(t.numel()) for t in [*state_dict.values(), *(tuner_state or {}).values()])
            guard = AllocationGuard(allocation_bound(numel, model), where)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Already found a `peft_config`.*")
            warnings.filterwarnings("ignore", message=".*Adapter name .* should not be contained.*")
            try:
                with guard:
                    if self.keeps_tuner:
                        tuner_object.add_adapter(self._state(model), self._tuner_cls(), model, name, peft_config)
                    else:
                        inject_adapter_in_model(peft_config, model, adapter_name=name, low_cpu_mem_usage=assign)
            except AdapterHubError:
                raise
            except (ValueError, TypeError, NotImplementedError) as exc:
                raise IncompatibleBaseModelError(
                    f"{where} cannot be injected into {type(model).__name__}: {exc}") from None
        if state_dict is None:
            return
        state_dict = self.drop_unchanged_base_tensors(model, state_dict, where)
        try:
            if self.keeps_tuner:
                result = tuner_object.load(self._state(model).tuner, name, state_dict, tuner_state or {})
            else:
                result = set_peft_model_state_dict(model, state_dict, adapter_name=name, low_cpu_mem_usage=assign)
        except AdapterHubError:
            raise
        except (RuntimeError, ValueError) as exc:  # size mismatch from load_state_dict
            raise IncompatibleBaseModelError(f"{where}: {exc}") from None
        unexpected = [k for k in result.unexpected_keys if not _saved_twice(k, state_dict)]
        missing = [k for k in result.missing_keys if self.keeps_tuner or owns_param(k, name, self._param_markers())]
        if unexpected or missing:
            raise IncompatibleBaseModelError(
                f"{where} does not match the modules its config targets: "
                + (f"tensors with no place in the model: {unexpected[:3]}; " if unexpected else "")
                + (f"adapter parameters missing from the file: {missing[:3]}" if missing else ""),
                hint="check target_modules in adapter_config.json against the weights",
            )
        tuner_object.check_base_unchanged(model, base, where, self.peft_type)

    def _purge(self, model: Any, name: str) -> None:
        """Delete ``name`` from every layer and config; restore base modules no adapter uses any more."""
        from torch.nn import ModuleDict

        self.reset_activation(model)
        self.forget_rows_adapter(model, name)
        if self.keeps_tuner:
            tuner_object.delete_adapter(self._state(model), name)
        layers = list(self.layers(model, name))
        wrappers = list(self._aux_wrappers(model, [name]))
        with structure_edit(model) as edit:
            removed = [holder[name] for layer in layers for holder in layer._modules.values()
                       if isinstance(holder, ModuleDict) and name in holder]
            touched = [*layers, *(holder for layer in layers for holder in layer._modules.values())]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for layer in layers:
                    layer.delete_adapter(name)
                for wrapper in wrappers:
                    wrapper.delete_adapter(name, new_active_adapters=[])
            configs = getattr(model, "peft_config", None)
            if isinstance(configs, dict):
                configs.pop(name, None)
            if self.keeps_tuner:
                tuner_object.forget_adapter(self._state(model), name, keep=bool(self.loaded_names(model)))
            stripped = self._strip_empty(model, None if wrappers or self.keeps_tuner else layers)
            if isinstance(configs, dict) and not configs:
                del model.peft_config
            if not (stripped or wrappers or self.keeps_tuner):  # only the adapter's own modules went
                edit.commit(removed=removed, touched=touched)

    def _strip_empty(self, model: Any, candidates: list[Any] | None = None) -> bool:
        """Put back the base module of every layer (and modules_to_save wrapper) left with no adapter;
        again until none is left, since PEFT nests layers (a second adapter on a tied layer).
        ``candidates``: the only layers that can have been emptied (all when None). Whether any was."""
        from peft.utils.other import AuxiliaryTrainingWrapper

        def empty(layer: Any) -> bool:
            return not any(len(getattr(layer, a)) for a in layer.adapter_layer_names)

        if candidates is not None and not any(empty(layer) for layer in candidates):
            return False
        layer_cls = self._layer_cls()
        stripped = changed = True
        while changed:
            changed = False
            for module_name, module in list(model.named_modules()):
                if not module_name:
                    continue
                if isinstance(module, layer_cls) and empty(module):
                    replacement = module.base_layer
                elif isinstance(module, AuxiliaryTrainingWrapper) and not module._adapters:
                    replacement = module.original_module
                else:
                    continue
                parent_name, _, child = module_name.rpartition(".")
                setattr(model.get_submodule(parent_name) if parent_name else model, child, replacement)
                changed = True
                break
        forget_structure(model)
        return stripped


def _additions(before: list[tuple[str, Any]], after: list[tuple[str, Any]],
               originals: dict[int, Any]) -> tuple[list[Any], list[Any]] | None:
    """What an injection added, from walks before and after it (under ``others_hidden``): the new
    modules (the top of each new subtree) and the modules that were there (each stand-in read as the
    container it stood for), or None when it also replaced or moved a module."""
    at = dict(after)
    if any(at.get(path) is not module for path, module in before):
        return None
    there = {id(module) for _, module in before}
    added = [module for path, module in after
             if id(module) not in there and id(at.get(path.rpartition(".")[0])) in there]
    return added, [originals.get(id(module), module) for _, module in before]
