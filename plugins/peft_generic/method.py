"""One method per PEFT type, built on the toolkit's PEFT tuner plumbing.

PEFT does everything type-specific: its tuner class injects the layers (kept per model, as
``PeftModel`` keeps it: ``keeps_tuner``), ``set_peft_model_state_dict`` / ``get_peft_model_state_dict``
move the weights, and the layers' ``merge``/``unmerge`` fold them in. The capability flags (mergeable,
two adapters of the type at once, per-row batches) are what PEFT really supports for the type,
found by running PEFT's classes (:func:`adapterhub.toolkit.peft.support.tuner_support`) the first
time a flag is read; reading them imports peft, registering the methods does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from adapterhub.plugin import AdapterFiles, UnsupportedOperationError
from adapterhub.toolkit.peft import PeftTunerMethod, layer_attributes

from .types import INTEGER_DTYPES, INTEGER_TENSORS, NEEDS, PEFT_TYPES, PROBE_HINTS, REFUSED


class _Supported:
    """A capability flag read from PEFT (class-level, so ``adapterhub methods`` needs no model)."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __get__(self, obj: Any, cls: type) -> bool:
        if cls.refusal() is not None:
            return False
        support = cls.support()
        return support.loads if self.field == "loads" else bool(getattr(support, self.field))


class GenericPeftMethod(PeftTunerMethod):
    """A PEFT type run by PEFT's own layers; subclassed once per type by :func:`method_for`."""

    peft_type: ClassVar[str]
    formats = ("peft",)
    priority = -10
    fallback = True
    keeps_tuner = True
    supports_average = False
    mergeable = _Supported("mergeable")  # type: ignore[assignment]
    supports_stack = _Supported("stackable")  # type: ignore[assignment]
    supports_mixed_batch = _Supported("per_row")  # type: ignore[assignment]
    #: PEFT weights an adapter only through add_weighted_adapter, which 0.21.2 has for LoRA and IA3
    #: alone (their plugins merge with weights); here a merge folds in the adapter as PEFT does, weight 1
    supports_weighted_merge = False
    trainable = _Supported("loads")  # type: ignore[assignment]

    @classmethod
    def support(cls) -> Any:
        from adapterhub.toolkit.peft.support import tuner_support

        return tuner_support(cls.peft_type, PROBE_HINTS.get(cls.peft_type))

    @classmethod
    def refusal(cls) -> str | None:
        """Why adapterhub cannot run this type (naming it), or None."""
        if cls.peft_type in REFUSED:
            return f"{cls.peft_type}: {REFUSED[cls.peft_type]}"
        why = cls.support().refusal
        if why is None:
            return None
        need = NEEDS.get(cls.peft_type)
        return f"{why} ({need})" if need else why

    def _refuse(self, where: str | None) -> None:
        why = self.refusal()
        if why is not None:
            raise UnsupportedOperationError(
                f"{where or 'adapter'}: {self.peft_type} adapters cannot run in adapterhub: {why}",
                hint="load it with PEFT itself (PeftModel.from_pretrained); `adapterhub methods --all` lists "
                     "what every PEFT type supports here",
            )

    # -- files ------------------------------------------------------------------------------

    def detect(self, config: dict[str, Any], files: set[str], model: Any = None) -> bool:
        return str(config.get("peft_type", "")).upper() == self.peft_type

    def merge_updates(self, adapter: AdapterFiles, weight: float = 1.0) -> list[Any]:
        """PEFT's layers do this type's maths, on a model: there is no checkpoint merge without one."""
        raise UnsupportedOperationError(
            f"method {self.name!r} cannot be merged into a checkpoint without a model (PEFT's {self.peft_type} "
            "layers compute its delta)",
            hint="load the base with AdapterModel, merge_and_unload() and save_pretrained() instead",
        )

    def allowed_dtypes(self, key: str) -> frozenset[str]:
        """Floating point, and integers for the index tensors the type stores (INTEGER_TENSORS)."""
        if key.rsplit(".", 1)[-1] in INTEGER_TENSORS.get(self.peft_type, ()):
            return INTEGER_DTYPES
        return self.tensor_dtypes

    def read(self, path: Path, *, allow_pickle: bool = False) -> AdapterFiles:
        self._refuse(str(path))
        return super().read(path, allow_pickle=allow_pickle)

    def check(self, model: Any, adapter: AdapterFiles) -> None:
        self._refuse(adapter.source)
        super().check(model, adapter)

    def check_tensor(self, model: Any, adapter: AdapterFiles, key: str, shape: tuple[int, ...]) -> str | None:
        """The module a tensor belongs to must exist; PEFT's loading checks the shapes."""
        own = {"base_layer", *layer_attributes(self._layer_cls())}
        parts = key.split(".")
        at = next((i for i, part in enumerate(parts) if part in own), None)
        if at is None:
            return super().check_tensor(model, adapter, key, shape)  # modules_to_save and other full tensors
        if at == 0 or self.base_module(model, ".".join(parts[:at])) is None:
            return f"target module {'.'.join(parts[:at])!r} (for {key}) not found in the model"
        return None

    # -- model ------------------------------------------------------------------------------

    def apply(self, model: Any, name: str, adapter: AdapterFiles) -> None:
        self._refuse(adapter.source)
        super().apply(model, name, adapter)

    def create(self, model: Any, name: str, config: dict[str, Any]) -> AdapterFiles:
        self._refuse(None)
        return super().create(model, name, config)

    def merge_layer(self, layer: Any, name: str, weight: float) -> None:
        try:
            layer.merge(adapter_names=[name])
        except (NotImplementedError, ValueError) as exc:  # PEFT refuses this layer (no bias to merge into, ...)
            raise UnsupportedOperationError(f"{self.name} adapter {name!r} cannot be merged here: {exc}") from None


def method_for(peft_type: str) -> GenericPeftMethod:
    """The generic method object of one PEFT type (method name: the type in lower case)."""
    cls = type(
        f"Generic{peft_type.title().replace('_', '')}Method",
        (GenericPeftMethod,),
        {
            "name": peft_type.lower(),
            "peft_type": peft_type,
            "peft_types": (peft_type,),
            "description": f"PEFT {peft_type}, run by PEFT's own layers (generic PEFT plugin)",
        },
    )
    return cls()


def generic_methods() -> list[GenericPeftMethod]:
    return [method_for(t) for t in PEFT_TYPES]
