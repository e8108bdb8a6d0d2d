"""Serving one adapter per row of a batch for a PEFT tuner method (``activate_rows``), without a
loop over the adapters.

On entering per-row mode every layer of the method is told to run no adapter itself (its forward
is then the base layer's), and two hooks per layer add what each row's adapter contributes: from the
layer's stacks (:mod:`.row_kernels`) for all rows at once (a gather and a batched matmul, or for a
decode step two ``embedding_bag`` sums over the stacks), or, where the
stacks cannot serve (a layer type without stacks; training mode or gradients that must reach the
adapters), through PEFT's own per-row forward (``adapter_names``; LoRA only: PEFT has none for IA3,
whose rows are then built from the adapters' own vectors). PEFT's ``modules_to_save`` copies
always take PEFT's path.

Per batch the cost is one index tensor and a check that the copies in the stacks are still the
adapters' weights (version counters and storage of the tensors they were copied from, for the
adapters of the batch). Stacks follow loads and deletions in place: a new adapter gets a free slot
(a deleted one's, or a new one; capacity doubles when full) and only its own weights are copied,
the first time a batch needs it; a deleted adapter's slot is zeroed and reused.

No torch at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ...errors import CompositionError
from ...plugin.records import BASE_ROW


@dataclass
class RowBatch:
    """The rows of the batches being served: slot per row (a LongTensor), and the adapter names."""

    names: list[str]  # PEFT's spelling: BASE_ROW for a row without this method's adapter
    index: Any
    distinct: frozenset[int]
    bags: dict[int, Any] = field(default_factory=dict)  # width -> embedding_bag indices and offsets (row_kernels)


@dataclass
class RowState:
    """Per model and method: the slots, the stacks of every layer, the rows being served."""

    serving: bool = False
    slots: dict[str, int] = field(default_factory=dict)
    free: list[int] = field(default_factory=list)
    next_slot: int = 1
    capacity: int = 0
    stacks: dict[Any, Any] = field(default_factory=dict)  # layer -> LayerStacks (absent: PEFT's path)
    sources: dict[int, list[Any]] = field(default_factory=dict)  # slot -> tensors copied from
    stamps: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # slot -> (version, data_ptr)
    synced: Any = None  # what the stacks were last built against
    batch: RowBatch | None = None
    hooks: list[Any] = field(default_factory=list)
    needs_grad: bool = False  # an adapter of the current batch has parameters that require grad


def _stamp(tensors: list[Any]) -> list[tuple[int, int]]:
    return [(t._version, t.data_ptr()) for t in tensors]


class PeftRows:
    """``activate_rows`` for a PEFT tuner method (mixed into :class:`~.method.PeftTunerMethod`)."""

    name: str

    def _rows(self, model: Any) -> RowState:
        state = self._state(model)
        if state.rows is None:
            state.rows = RowState()
        return state.rows

    def activate_rows(self, model: Any, rows: list[str | None]) -> None:
        import torch

        state = self._rows(model)
        layers = list(self.layers(model))
        if not state.serving:
            self.reset_activation(model)  # undo an Average's scales, a previous setup's hooks
            for layer in layers:
                set_layer_active(layer, [])
            for wrapper in self._aux_wrappers(model):
                wrapper.enable_adapters(True)
                wrapper.set_adapter([], inference_mode=True)
            self._sync(model, state, layers)
            self._install_row_hooks(model, state, layers)
            state.serving = True
        else:
            self._sync(model, state, layers)
        slots = [0 if n is None else state.slots[n] for n in rows]
        needs_grad = False
        for slot in set(slots) - {0}:
            sources = state.sources.get(slot, [])
            if _stamp(sources) != state.stamps.get(slot):  # the adapter changed since it was copied
                self._write_slot(state, self._name_of(state, slot), slot)
                sources = state.sources[slot]
            needs_grad = needs_grad or any(t.requires_grad for t in sources)
        device = next(iter(state.stacks.values())).device if state.stacks else None
        index = torch.tensor(slots, dtype=torch.long, device=device)
        state.batch = RowBatch([BASE_ROW if n is None else n for n in rows], index, frozenset(slots))
        state.needs_grad = needs_grad

    def activate_batch_split(self, model: Any, names: list[str | None], batch_sizes: list[int]) -> None:
        rows = [n for n, size in zip(names, batch_sizes, strict=True) for _ in range(size)]
        self.activate_rows(model, rows)

    def _leave_rows(self, model: Any) -> None:
        state = self._state(model).rows
        if state is None or not state.serving:
            return
        for handle in state.hooks:
            handle.remove()
        state.hooks.clear()
        state.serving = False
        state.batch = None

    # -- the stacks -----------------------------------------------------------------------------

    @staticmethod
    def _name_of(state: RowState, slot: int) -> str:
        return next(n for n, s in state.slots.items() if s == slot)

    def _sync(self, model: Any, state: RowState, layers: list[Any]) -> None:
        """Bring the stacks up to date with the adapters and layers on the model: O(what changed)."""
        from .row_kernels import MIN_CAPACITY, kernel_for

        loaded = self.loaded_names(model)
        token = (tuple(sorted(loaded)), tuple(map(id, layers)))
        if token == state.synced:
            return
        for name in [n for n in state.slots if n not in loaded]:
            self._forget_slot(state, name)
        alive = set(layers)
        for layer in [la for la in state.stacks if la not in alive]:
            del state.stacks[layer]
        for name in sorted(loaded - set(state.slots)):
            if state.free:
                state.slots[name] = state.free.pop()
            else:
                state.slots[name] = state.next_slot
                state.next_slot += 1
        needed = max(state.slots.values(), default=0) + 1
        if needed > state.capacity:
            state.capacity = max(MIN_CAPACITY, state.capacity)
            while state.capacity < needed:
                state.capacity *= 2
            for stacks in state.stacks.values():
                stacks.grow(state.capacity)
        fresh = []
        for layer in layers:
            if layer in state.stacks or kernel_for(layer) is None:
                continue
            state.stacks[layer] = kernel_for(layer)(layer, state.capacity)
            fresh.append(state.stacks[layer])
        for name, slot in state.slots.items():  # new adapters, and adapters held by new layers
            if slot not in state.sources or any(stacks.holds(name) for stacks in fresh):
                self._write_slot(state, name, slot)
        state.synced = token

    def _write_slot(self, state: RowState, name: str, slot: int) -> None:
        sources: list[Any] = []
        for stacks in state.stacks.values():
            if stacks.holds(name):
                problem = stacks.usable(name)
                if problem:
                    raise CompositionError(f"adapter_names/BatchSplit: {problem}, which cannot serve rows of a batch",
                                           hint="run its rows in a batch of their own")
                sources += stacks.write(name, slot)
            else:
                stacks.clear(slot)
        state.sources[slot] = sources
        state.stamps[slot] = _stamp(sources)

    def _forget_slot(self, state: RowState, name: str) -> None:
        slot = state.slots.pop(name)
        for stacks in state.stacks.values():
            stacks.clear(slot)
        state.sources.pop(slot, None)
        state.stamps.pop(slot, None)
        state.free.append(slot)

    def forget_rows_adapter(self, model: Any, name: str) -> None:
        """Adapter ``name`` is being deleted: zero its slot now and offer it to the next adapter."""
        state = self._state(model).rows
        if state is None or name not in state.slots:
            return
        self._forget_slot(state, name)
        state.synced = None
        if not state.slots:  # the last adapter: the stacks go
            self._leave_rows(model)
            self._state(model).rows = None

    # -- hooks ------------------------------------------------------------------------------------

    def _install_row_hooks(self, model: Any, state: RowState, layers: list[Any]) -> None:
        for layer in layers:
            stacks = state.stacks.get(layer)
            state.hooks.append(layer.register_forward_pre_hook(
                partial(_before, state, stacks, self.name), with_kwargs=True))
            if stacks is not None:
                state.hooks.append(layer.register_forward_hook(partial(_after, state, stacks)))
        for wrapper in self._aux_wrappers(model):
            state.hooks.append(wrapper.register_forward_pre_hook(
                partial(_before, state, None, self.name), with_kwargs=True))


def set_layer_active(layer: Any, names: list[str]) -> None:
    """Make ``names`` the active adapters of one PEFT layer.

    PEFT's ``set_adapter`` also walks every adapter of the layer to set ``requires_grad`` (which the
    runtime owns and sets itself), so switching would cost O(adapters); setting the active list is
    what remains of it.
    """
    if hasattr(layer, "_active_adapter"):
        layer._active_adapter = list(names)
    else:  # pragma: no cover - a PEFT release that keeps the active adapters elsewhere
        layer.set_adapter(list(names), inference_mode=True)


def _serves(layer: Any, state: RowState) -> bool:
    """Whether the stacks serve this forward (else PEFT's own per-row forward does)."""
    import torch

    return not layer.training and not (state.needs_grad and torch.is_grad_enabled())


def _check_rows(state: RowState, x: Any, method: str) -> RowState:
    batch = state.batch
    rows = int(x.shape[0]) if hasattr(x, "shape") and x.dim() > 0 else -1
    if batch is None or rows != len(batch.names):
        raise CompositionError(
            f"adapter_names/BatchSplit: the batch has {rows} rows but the {method} adapters were given "
            f"for {0 if batch is None else len(batch.names)}",
            hint="give one adapter name per row (BatchSplit: make batch_sizes add up to the batch size)",
        )
    return state


def _before(state: RowState, stacks: Any, method: str, module: Any, args: tuple, kwargs: dict) -> Any:
    x = args[0] if args else next(iter(kwargs.values()), None)
    batch = _check_rows(state, x, method).batch
    if stacks is not None and _serves(module, state):
        if getattr(stacks, "feedforward", False):  # IA3 on a feed-forward layer scales the input
            return (stacks.scale(x, stacks.rows(batch.index, None)), *args[1:]), kwargs
        return None
    if stacks is not None and hasattr(stacks, "feedforward"):  # IA3 with gradients: the adapters' own vectors
        if stacks.feedforward:
            return (stacks.scale(x, stacks.rows(batch.index, batch.names)), *args[1:]), kwargs
        return None
    kwargs["adapter_names"] = batch.names  # PEFT's per-row forward
    return args, kwargs


def _after(state: RowState, stacks: Any, module: Any, args: tuple, output: Any) -> Any:
    batch = state.batch
    serves = _serves(module, state)
    if hasattr(stacks, "feedforward"):  # IA3
        if stacks.feedforward:
            return None
        return stacks.scale(output, stacks.rows(batch.index, None if serves else batch.names))
    if not serves:
        return None  # PEFT's own forward added the LoRA terms
    dora = bool(stacks.dora_slots) and not stacks.dora_slots.isdisjoint(batch.distinct)
    return stacks.after(args[0], output, batch, dora)
