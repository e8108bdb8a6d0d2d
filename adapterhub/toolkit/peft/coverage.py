"""Every PEFT adapter type against the installed methods: which method loads it and what it can do
(``adapterhub methods --all`` and the README table it generates).

For each type in the installed PEFT's ``PeftType``, the method that claims a plain adapter of that
type (the highest priority among the registered methods whose ``detect`` accepts
``{"peft_type": <type>}`` without a model) and that method's capability flags. A method may still
refuse the type (the generic PEFT plugin claims every type so that it can say why it cannot run
one); such a type does not load and ``reason`` says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ...plugin.registry import registered_methods


@dataclass(frozen=True)
class TypeCoverage:
    """One PEFT type: who claims it and what adapterhub does with it."""

    peft_type: str
    method: str | None
    plugin: str | None
    loads: bool
    stacks: bool
    merges: bool
    per_row: bool
    weighted_merge: bool
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _claimant(peft_type: str) -> Any:
    config = {"peft_type": peft_type}
    claimants = [r for r in registered_methods().values() if r.method.detect(config, set(), None) is True]
    return max(claimants, key=lambda r: r.method.priority) if claimants else None


def type_coverage(peft_type: str) -> TypeCoverage:
    reg = _claimant(peft_type)
    if reg is None:
        return TypeCoverage(peft_type, None, None, False, False, False, False, False,
                            reason="no installed method plugin claims it")
    method = reg.method
    refusal = getattr(method, "refusal", None)
    reason = refusal() if callable(refusal) else None
    caps = method.capabilities()
    loads = reason is None
    return TypeCoverage(
        peft_type, method.name, reg.plugin, loads,
        stacks=loads and caps["supports_stack"],
        merges=loads and caps["mergeable"],
        per_row=loads and caps["supports_mixed_batch"],
        weighted_merge=loads and caps["supports_weighted_merge"],
        reason=reason,
    )


def coverage() -> list[TypeCoverage]:
    """Every PEFT type the installed PEFT knows, in PEFT's order."""
    from .tuners import known_types

    return [type_coverage(t) for t in known_types()]


def markdown_table(rows: list[TypeCoverage]) -> str:
    """The README table: one line per type."""

    def yes(flag: bool) -> str:
        return "yes" if flag else "no"

    lines = ["| PEFT type | method | loads | stacks | merges | per-row | why not |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        method = f"`{r.method}`" if r.method else "-"
        why = (r.reason or "").replace("|", "\\|")
        lines.append(f"| `{r.peft_type}` | {method} | {yes(r.loads)} | {yes(r.stacks)} | {yes(r.merges)} | "
                     f"{yes(r.per_row)} | {why} |")
    return "\n".join(lines) + "\n"
