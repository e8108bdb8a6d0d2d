"""Checking the options a user gives a method when creating an adapter (``add_adapter(name, method, **options)``,
``adapterhub train --method M --opt ...``).

A misspelled option (``lora_alpah=32``, ``rank=4``) must not be dropped silently, or the run trains with
the defaults. Every method's ``create`` calls :func:`check_options` with the keys it understands; an
unknown key is a :class:`~adapterhub.errors.UsageError` that names the key, suggests the closest valid
one and lists them all. Configs read from files are not checked here: a file saved by a newer release
may carry keys this one does not know, and PEFT drops those too.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from ..errors import UsageError


def check_options(
    method: str,
    options: Mapping[str, Any],
    valid: Iterable[str],
    *,
    aliases: Mapping[str, str] | None = None,
    unsupported: Collection[str] = (),
) -> None:
    """Raise :class:`UsageError` if ``options`` holds a key outside ``valid``.

    ``aliases``: common other spellings and the key they mean (``{"rank": "r"}``), used for the
    suggestion. ``unsupported``: keys the method's file format knows but this implementation does not
    act on; giving one a value other than None is an error too (it would be ignored).
    """
    valid = sorted(set(valid))
    aliases = dict(aliases or {})
    problems: list[str] = []
    for key in options:
        if key in unsupported:
            if options[key] is not None:
                problems.append(f"{key!r} is not supported by adapterhub's {method} method")
            continue
        if key in valid:
            continue
        guess = aliases.get(key) or next(iter(difflib.get_close_matches(key, valid, n=1, cutoff=0.6)), None)
        problems.append(f"unknown option {key!r}" + (f" (did you mean {guess!r}?)" if guess else ""))
    if problems:
        raise UsageError(
            f"{method}: " + "; ".join(problems),
            hint=f"valid options for {method}: {', '.join(k for k in valid if k not in unsupported)}",
        )


def dataclass_options(cls: type) -> list[str]:
    """The keyword arguments a config dataclass accepts (PEFT's ``LoraConfig``, ...)."""
    import dataclasses

    return [f.name for f in dataclasses.fields(cls) if f.init]
