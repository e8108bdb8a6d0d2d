"""Adding one more adapter to a PEFT-wrapped model in time that does not grow with the adapters it
already holds.

PEFT's injection and state-dict loading walk the whole model (``named_modules``,
``named_parameters``, ``load_state_dict``) several times; with 64 LoRAs on GPT-2, nine tenths of what
they walk are the other adapters' ``lora_A.<name>``, ``lora_B.<name>`` and ``lora_dropout.<name>``
modules, so the 64th load cost ten times the 2nd. :func:`others_hidden` swaps, for the time of the
injection, each of the method's layers' per-adapter containers (``ModuleDict`` and ``ParameterDict``
attributes named in ``adapter_layer_names`` / ``other_param_names``) for empty ones: every walk then
sees the base model and the new adapter only. On the way out the new adapter's entries join the
original containers (after the adapters already there, as PEFT adds them) and the originals are put
back, whether the injection succeeded or not; a failed injection is then purged as usual.

What the hidden adapters are is untouched: their tensors, their ``requires_grad`` and the plain-dict
attributes (``r``, ``scaling``) stay as they are; PEFT only writes the new adapter's entries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any


def _containers(layer: Any) -> Iterator[tuple[str, Any]]:
    from torch import nn

    for attribute in (*layer.adapter_layer_names, *layer.other_param_names):
        value = layer._modules.get(attribute)
        if type(value) in (nn.ModuleDict, nn.ParameterDict) and len(value):
            yield attribute, value


@contextlib.contextmanager
def others_hidden(layers: Iterable[Any]) -> Iterator[dict[int, Any]]:
    """While active, ``layers`` (PEFT tuner layers) show no adapter in their per-adapter containers.

    Yields ``{id(stand_in): original}``: a snapshot of modules taken inside (``walk_modules``) names
    the stand-ins, which must be read as the originals once the context has exited.
    """
    swapped: list[tuple[Any, str, Any, Any]] = []
    try:
        for layer in layers:
            for attribute, original in list(_containers(layer)):
                stand_in = type(original)()
                layer._modules[attribute] = stand_in
                swapped.append((layer, attribute, original, stand_in))
        yield {id(stand_in): original for _, _, original, stand_in in swapped}
    finally:
        for layer, attribute, original, stand_in in reversed(swapped):
            current = layer._modules.get(attribute)
            added = current if current is not None and current is not original else stand_in
            for key, value in list(added.items()):
                if key not in original:
                    original[key] = value
            layer._modules[attribute] = original


def unhidden(modules: list[tuple[str, Any]], originals: dict[int, Any]) -> list[tuple[str, Any]]:
    """A ``walk_modules`` snapshot taken under :func:`others_hidden`, with each stand-in read as the
    original container it stood for."""
    if not originals:
        return modules
    return [(path, originals.get(id(module), module)) for path, module in modules]
