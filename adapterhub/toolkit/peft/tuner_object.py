"""Keeping PEFT's tuner object per model, as ``PeftModel`` keeps it in ``base_model``.

``inject_adapter_in_model`` builds a tuner, injects its layers and throws the tuner away, which
PEFT refuses for tuners whose layers share state kept on the tuner (``uses_shared_state``: VeRA's
projections, VB-LoRA's vector bank). A method with ``keeps_tuner`` keeps the tuner instead (in its
per-model state, never inside the model) and does what ``PeftModel`` does:

* the first adapter builds the tuner (``tuner_cls(model, config, adapter_name)``), every further
  one is added to it (``tuner.peft_config[name] = config; tuner.inject_adapter(model, name)``, as
  ``PeftModel.add_adapter``), so shared state is shared exactly as in PEFT;
* weights go in and out through PEFT's ``set_peft_model_state_dict`` / ``get_peft_model_state_dict``
  on a view shaped like a ``PeftModel`` (``view.base_model`` is the tuner), so PEFT's own key
  mapping applies, including tuner-level tensors such as ``base_model.vera_A``;
* removing an adapter goes through PEFT's ``tuner.delete_adapter`` (layers and shared state), then
  clears what a half-injected adapter left in the tuner's containers; the tuner goes when the
  method's last adapter does.

Also here: the check that loading an adapter left every base weight untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import AdapterFormatError
from .files import PEFT_PREFIX


def add_adapter(state: Any, tuner_cls: type, model: Any, name: str, peft_config: Any) -> None:
    """Inject adapter ``name`` through the model's tuner of this method (built on first use)."""
    if state.tuner is None:
        state.tuner = tuner_cls(model, peft_config, adapter_name=name)
        return
    state.tuner.peft_config[name] = peft_config
    try:
        state.tuner.inject_adapter(model, name)
    except BaseException:
        state.tuner.peft_config.pop(name, None)
        raise


def view(tuner: Any) -> Any:
    """A module shaped like a ``PeftModel`` around ``tuner``: what PEFT's state-dict functions expect."""
    import torch

    class PeftModelView(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base_model = tuner

        @property
        def peft_config(self) -> dict[str, Any]:
            return tuner.peft_config

        @property
        def config(self) -> Any:
            return getattr(tuner.model, "config", None)

    return PeftModelView()


def load(tuner: Any, name: str, state_dict: dict[str, Any], tuner_state: dict[str, Any]) -> LoadResult:
    """Load an adapter's tensors (canonical keys plus tuner-level ones) with PEFT's
    ``set_peft_model_state_dict``. ``missing``: what PEFT would save for this adapter and the file lacks
    (a layer's reference to a shared tensor is not missing: PEFT saves that once, on the tuner)."""
    from peft import set_peft_model_state_dict

    tensors = {PEFT_PREFIX + k: v for k, v in state_dict.items()}
    tensors.update(tuner_state)
    result = set_peft_model_state_dict(view(tuner), tensors, adapter_name=name)
    inside, outside = export(tuner, name)
    missing = sorted({PEFT_PREFIX + k for k in inside if k not in state_dict} | {k for k in outside if k not in tuner_state})
    return LoadResult(missing, list(result.unexpected_keys))


@dataclass
class LoadResult:
    """What a load left out (PEFT's keys): tensors the adapter should have, and tensors with no place."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def export(tuner: Any, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model tensors with canonical keys, tuner-level tensors with PEFT's keys) of adapter ``name``."""
    from peft import get_peft_model_state_dict

    tensors = get_peft_model_state_dict(view(tuner), adapter_name=name, save_embedding_layers=False)
    inside = {k[len(PEFT_PREFIX):]: v for k, v in tensors.items() if k.startswith(PEFT_PREFIX)}
    outside = {k: v for k, v in tensors.items() if not k.startswith(PEFT_PREFIX)}
    return inside, outside


def delete_adapter(state: Any, name: str) -> None:
    """PEFT's own ``delete_adapter`` on the tuner (its layers and its shared state, such as TinyLoRA's
    vectors), when the tuner knows ``name``; a half-injected adapter it never registered is left to
    the layer-by-layer purge."""
    import warnings

    tuner = state.tuner
    if tuner is not None and name in tuner.peft_config:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tuner.delete_adapter(name)


def forget_adapter(state: Any, name: str, *, keep: bool) -> None:
    """Remove what is left of ``name`` in the tuner's shared containers; drop the tuner unless ``keep``."""
    tuner = state.tuner
    if tuner is None:
        return
    if not keep:
        state.tuner = None
        return
    for child_name, child in list(tuner.named_children()):
        if child_name == "model":
            continue
        keys = getattr(child, "keys", None)
        if callable(keys) and name in list(keys()):
            del child[name]


def base_weights(model: Any) -> dict[str, tuple[Any, int, int]]:
    """Every parameter's identity, version counter and storage: enough to tell that one was rewritten
    in place or given new data, without copying any tensor."""
    return {n: (p, p._version, p.data_ptr()) for n, p in model.named_parameters()}


def check_base_unchanged(model: Any, before: dict[str, tuple[Any, int, int]] | None, where: str,
                         peft_type: str) -> None:
    """Raise when injecting the adapter rewrote a base weight (a loaded adapter must not touch them)."""
    if before is None:
        return
    for param, version, ptr in before.values():
        if param._version != version or param.data_ptr() != ptr:
            name = next(n for n, (p, _, _) in before.items() if p is param)
            raise AdapterFormatError(
                f"{where}: injecting this {peft_type} adapter rewrote the base weight {name}; adapterhub never "
                "changes base weights while loading",
                hint="the model is no longer the pristine base: reload it, and load this adapter with PEFT itself",
            )
