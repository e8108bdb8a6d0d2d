"""Checks on an adapter_config.json from an untrusted source, before PEFT acts on it.

PEFT turns several config fields into regular expressions matched against every module name,
and some LoRA initialisations rewrite the base model's weights. A downloaded config must not be
able to hang the process (catastrophic regex backtracking) or silently change the base model.
"""

from __future__ import annotations

from typing import Any

from ..errors import AdapterFormatError

#: Config fields PEFT uses as (or splices into) regular expressions.
_PATTERN_FIELDS = ("target_modules", "exclude_modules", "feedforward_modules", "layers_pattern", "modules_to_save")
#: Fields whose keys are regular expressions: PEFT names every per-module override dict ``*_pattern``
#: (``rank_pattern``, ``alpha_pattern``, ``lambda_pattern``, ``n_frequency_pattern``, ...).
_PATTERN_KEY_SUFFIX = "_pattern"
_MAX_PATTERN_CHARS = 1000
#: Several unbounded repeats in a row already backtrack polynomially (n ** k on a module name).
_MAX_UNBOUNDED_REPEATS = 6
#: LoRA initialisations that write into the base layer's weight (PiSSA, OLoRA, CorDA, LoftQ, LoRA-GA).
_BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")


def _patterns(config: dict[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for field in _PATTERN_FIELDS:
        value = config.get(field)
        # A list of target/exclude modules is matched by suffix, not as regexes.
        if isinstance(value, str):
            found.append((field, value))
        elif isinstance(value, list) and field in ("layers_pattern", "modules_to_save"):
            found += [(field, v) for v in value if isinstance(v, str)]
    for field, value in config.items():
        if isinstance(field, str) and field.endswith(_PATTERN_KEY_SUFFIX) and isinstance(value, dict):
            found += [(f"{field} key", k) for k in value if isinstance(k, str)]
    return found


def _redos_problem(pattern: str) -> str | None:
    """Why ``pattern`` could backtrack catastrophically, or None. Conservative: refuses repeats of
    anything that itself repeats or alternates (``(a+)+``, ``(.*.*)*``, ``(a|ab)*``)."""
    import re
    from re import _constants as c  # type: ignore[attr-defined]
    from re import _parser as parser  # type: ignore[attr-defined]

    if len(pattern) > _MAX_PATTERN_CHARS:
        return f"longer than {_MAX_PATTERN_CHARS} characters"
    try:
        parsed = parser.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"not a valid regular expression ({exc})"
    unbounded = 0

    def walk(items: Any, inside_repeat: bool) -> str | None:
        nonlocal unbounded
        for op, arg in items:
            if op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
                low, high, body = arg
                if high > 1 and inside_repeat:
                    return "a repeat nested inside a repeat (catastrophic backtracking)"
                if high == c.MAXREPEAT:
                    unbounded += 1
                problem = walk(body, inside_repeat or high > 1)
            elif op is c.BRANCH:
                if inside_repeat:
                    return "an alternation inside a repeat (catastrophic backtracking)"
                problem = next((p for alt in arg[1] if (p := walk(alt, inside_repeat))), None)
            elif op is c.SUBPATTERN:
                problem = walk(arg[-1], inside_repeat)
            elif op in (c.ASSERT, c.ASSERT_NOT, c.ATOMIC_GROUP):
                problem = walk(arg[-1] if op is not c.ATOMIC_GROUP else arg, inside_repeat)
            elif op is c.GROUPREF_EXISTS:
                problem = walk(arg[1], inside_repeat) or (walk(arg[2], inside_repeat) if arg[2] else None)
            else:
                problem = None
            if problem:
                return problem
        return None

    problem = walk(parsed.data, False)
    if problem is None and unbounded > _MAX_UNBOUNDED_REPEATS:
        problem = f"more than {_MAX_UNBOUNDED_REPEATS} unbounded repeats (slow backtracking)"
    return problem


def check_untrusted_config(config: dict[str, Any], where: str, *, loading: bool) -> None:
    """Raise AdapterFormatError naming the field when ``config`` could hang or mutate the base model.

    ``loading``: saved weights are about to be applied, so an initialisation that rewrites the
    base weights has no purpose and would change the base model behind the adapter's back.
    """
    for field, pattern in _patterns(config):
        problem = _redos_problem(pattern)
        if problem:
            raise AdapterFormatError(
                f"{where}: adapter_config.json field {field} {pattern[:80]!r} is refused: {problem}",
                hint="use a list of module names, or a simple pattern such as '.*\\.(q_proj|v_proj)'",
            )
    init = config.get("init_lora_weights")
    if loading and isinstance(init, str) and init.lower().startswith(_BASE_REWRITING_INITS):
        raise AdapterFormatError(
            f"{where}: adapter_config.json field init_lora_weights={init!r} would rewrite the base model's "
            "weights while loading",
            hint="convert the adapter to plain LoRA (PEFT: save_pretrained(path_initial_model_for_weight_conversion=...))"
            " or set init_lora_weights to true",
        )


#: aten factory functions whose first argument is the size of the tensor they allocate
_FACTORIES = ("empty", "empty_strided", "zeros", "ones", "full", "rand", "randn", "randint", "randperm",
              "eye", "arange", "new_empty", "new_zeros", "new_ones", "new_full", "empty_like")


def allocation_bound(state_numel: int, model: Any) -> int:
    """The most elements one tensor may have while an adapter with ``state_numel`` saved elements
    is injected into ``model``: four times the larger of the adapter's tensors and the model's
    largest parameter (what PEFT's layers, shared projections and SVD-based inits need), at least 2**20."""
    largest = max((int(p.numel()) for p in model.parameters()), default=0)
    return max(4 * max(int(state_numel), largest), 1 << 20)


class AllocationGuard:
    """While active, refuse to create any tensor of more than ``limit`` elements, before it is allocated.

    A config from an untrusted file sizes what PEFT allocates when it injects the adapter (ranks,
    projection sizes, vector banks), before the file's weights are compared with it; a config that
    asks for more than the adapter and the model can need is refused here, naming the size.
    """

    def __init__(self, limit: int, where: str) -> None:
        self.limit = limit
        self.where = where
        self._mode: Any = None

    def __enter__(self) -> AllocationGuard:
        import math

        from torch.utils._python_dispatch import TorchDispatchMode

        guard = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
                kwargs = kwargs or {}
                name = func.__name__.split(".")[0]
                if name in _FACTORIES and args:
                    size = args[0]
                    if isinstance(size, int):
                        numel = size * (size if name == "eye" else 1)
                    elif isinstance(size, (list, tuple)) and all(isinstance(s, int) for s in size):
                        numel = math.prod(size)
                    else:
                        numel = 0
                    if numel > guard.limit:
                        raise AdapterFormatError(
                            f"{guard.where}: adapter_config.json asks for a tensor of {numel:,} elements while the "
                            f"adapter is injected, more than it and the model can need ({guard.limit:,})",
                            hint="the config and the weights of this adapter disagree; re-save it with PEFT",
                        )
                return func(*args, **kwargs)

        self._mode = Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._mode.__exit__(*exc)
