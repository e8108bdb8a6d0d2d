"""What PEFT really supports for a layer-tuner type, found by running PEFT's own classes.

:func:`tuner_support` builds two adapters of the type with PEFT (its tuner class, the way
``PeftModel`` adds adapters) on a small synthetic model, gives them random weights, and asks PEFT:

* ``mergeable``: the layers' ``merge`` folds an adapter in and the merged model computes what the
  adapter computed; ``unmerge`` takes it out again;
* ``stackable``: with both adapters active (``set_adapter([a, b])``) PEFT runs a forward that uses
  both (its output is neither adapter's alone);
* ``per_row``: PEFT's tuner routes ``adapter_names`` (its ``_enable_peft_forward_hooks``) and each
  row comes out as its own adapter's;
* ``weighted_merge``: the tuner's ``add_weighted_adapter`` builds a weighted copy of an adapter.

A capability PEFT refuses records PEFT's error in ``notes``. Cached per process and type; the
probe model is tiny (a few 256-wide layers), so one type takes milliseconds after ``import peft``.
Types the runtime cannot run at all (:func:`~.tuners.refusal`) are not probed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from .tuners import refusal, tuner_class

#: widths of the probe model's layers, tried in turn: most of PEFT's defaults fit 64; the largest
#: (block sizes and vector lengths of 256) fit 256
PROBE_WIDTHS = (64, 256)
#: the probe model's modules, tried in turn as target_modules until PEFT accepts one
PROBE_TARGETS = (["q", "v"], ["norm"], ["embed"])


@dataclass(frozen=True)
class TunerSupport:
    """What the runtime can do with one PEFT type (every flag False when ``refusal`` is set)."""

    peft_type: str
    refusal: str | None = None
    mergeable: bool = False
    stackable: bool = False
    per_row: bool = False
    weighted_merge: bool = False
    #: capability -> why PEFT does not support it (PEFT's error, or what the probe saw)
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def loads(self) -> bool:
        return self.refusal is None


def _probe_model(width: int) -> Any:
    import torch

    class Probe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(16, width)
            self.norm = torch.nn.LayerNorm(width)
            self.q = torch.nn.Linear(width, width)
            self.v = torch.nn.Linear(width, 2 * width)  # not square: as value projections often are

        def forward(self, input_ids: Any) -> Any:
            return self.v(torch.tanh(self.q(self.norm(self.embed(input_ids)))))

    torch.manual_seed(0)
    return Probe().eval()


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def _build(peft_type: str, hints: dict[str, Any]) -> tuple[Any, Any, str | None]:
    """(probe model, tuner holding adapters "a" and "b" or only "a", why "b" could not be added)."""
    from peft import PeftConfig

    tuner_cls = tuner_class(peft_type)
    last: BaseException | None = None
    for width, targets in ((w, t) for w in PROBE_WIDTHS for t in PROBE_TARGETS):
        model = _probe_model(width)

        def config(**extra: Any) -> Any:
            kwargs = {"target_modules": list(targets), **hints, **extra}
            return PeftConfig.from_peft_type(peft_type=peft_type, **kwargs)

        try:
            tuner = tuner_cls(model, config(), adapter_name="a")
        except Exception as exc:  # noqa: BLE001 - PEFT's refusal of this target; try the next
            last = exc
            continue
        try:
            tuner.peft_config["b"] = config(inference_mode=True)
            tuner.inject_adapter(model, "b")  # how PeftModel.add_adapter adds a second adapter
            second = None
        except Exception as exc:  # noqa: BLE001
            tuner.peft_config.pop("b", None)
            second = _error(exc)
        tuner.eval()  # as PeftModel.from_pretrained leaves it: no dropout, no sampling
        return model, tuner, second
    raise RuntimeError(f"PEFT could not build a {peft_type} adapter on the probe model: {_error(last)}")


def _randomise(model: Any) -> None:
    import torch

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            parts = name.split(".")
            if ("a" in parts or "b" in parts) and p.dtype.is_floating_point:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _layers(model: Any, peft_type: str) -> list[Any]:
    layer_cls = tuner_class(peft_type).tuner_layer_cls
    return [m for m in model.modules() if isinstance(m, layer_cls)]


def _run(model: Any, tuner: Any, names: list[str], ids: Any, **kwargs: Any) -> Any:
    import torch

    tuner.set_adapter(names, inference_mode=True)
    with torch.no_grad():
        if kwargs:
            with tuner._enable_peft_forward_hooks(ids, **kwargs):
                return model(ids)
        return model(ids)


def _close(x: Any, y: Any) -> bool:
    import torch

    return bool(torch.allclose(x, y, atol=1e-4, rtol=1e-4))


@cache
def _probe(peft_type: str, hint_items: tuple[tuple[str, Any], ...]) -> TunerSupport:
    import torch

    kind = peft_type.upper()
    why = refusal(kind)
    if why is not None:
        return TunerSupport(kind, refusal=why)
    notes: dict[str, str] = {}
    # the probe seeds and draws random numbers: the caller's random state is left as it was
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")
        try:
            model, tuner, second = _build(kind, {k: _thaw(v) for k, v in hint_items})
        except RuntimeError as exc:
            return TunerSupport(kind, notes={c: str(exc) for c in ("mergeable", "stackable", "per_row")})
        _randomise(model)
        ids = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
        out_a = _run(model, tuner, ["a"], ids)
        mergeable = _merges(model, tuner, kind, ids, out_a, notes)
        weighted = _weighted(tuner, notes)
        stackable = per_row = False
        if second is not None:
            notes["stackable"] = notes["per_row"] = f"PEFT cannot add a second adapter: {second}"
        else:
            out_b = _run(model, tuner, ["b"], ids)
            try:
                both = _run(model, tuner, ["a", "b"], ids)
                stackable = not torch.equal(both, out_a) and not torch.equal(both, out_b)
                if not stackable:
                    notes["stackable"] = "with two adapters active PEFT's output is one adapter's alone"
            except Exception as exc:  # noqa: BLE001 - PEFT's refusal is the answer
                notes["stackable"] = _error(exc)
            if not hasattr(tuner, "_enable_peft_forward_hooks"):
                notes["per_row"] = f"PEFT's {type(tuner).__name__} does not route adapter_names"
            else:  # last: a failed forward can leave PEFT's hooks behind
                try:
                    rows = _run(model, tuner, ["a", "b"], ids, adapter_names=["a", "b"])
                    per_row = _close(rows[0], out_a[0]) and _close(rows[1], out_b[1])
                    if not per_row:
                        notes["per_row"] = "PEFT's adapter_names did not give each row its own adapter's output"
                except Exception as exc:  # noqa: BLE001
                    notes["per_row"] = _error(exc)
    return TunerSupport(kind, mergeable=mergeable, stackable=stackable, per_row=per_row,
                        weighted_merge=weighted and mergeable, notes=notes)


def _merges(model: Any, tuner: Any, kind: str, ids: Any, expected: Any, notes: dict[str, str]) -> bool:
    import torch

    tuner.set_adapter(["a"], inference_mode=True)
    try:
        for layer in _layers(model, kind):
            layer.merge(adapter_names=["a"])
        with torch.no_grad():
            merged = model(ids)
        for layer in _layers(model, kind):
            layer.unmerge()
    except Exception as exc:  # noqa: BLE001
        notes["mergeable"] = _error(exc)
        return False
    if not _close(merged, expected):
        notes["mergeable"] = "PEFT's merged layers do not compute what the adapter computed"
        return False
    return True


def _weighted(tuner: Any, notes: dict[str, str]) -> bool:
    add = getattr(tuner, "add_weighted_adapter", None)
    if add is None:
        notes["weighted_merge"] = f"PEFT's {type(tuner).__name__} has no add_weighted_adapter"
        return False
    try:
        add(adapters=["a"], weights=[0.5], adapter_name="weighted", combination_type="linear")
    except Exception as exc:  # noqa: BLE001
        notes["weighted_merge"] = _error(exc)
        return False
    return True


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _thaw(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def tuner_support(peft_type: str, hints: dict[str, Any] | None = None) -> TunerSupport:
    """What the runtime can do with ``peft_type`` (cached). ``hints``: config fields PEFT requires
    for the type and has no default for (AdaLoRA's ``total_step``), used only for the probe."""
    items = tuple(sorted((k, _freeze(v)) for k, v in (hints or {}).items()))
    return _probe(peft_type.upper(), items)
