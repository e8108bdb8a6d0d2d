"""Version specs of registry names: PEP 440, plus the caret and tilde ranges of npm, cargo and uv users.

``^`` allows changes that do not modify the left-most non-zero component; ``~`` allows patch-level
changes (minor-level when only a major is given). Missing components count as zero:

==========  ======================  ==========  ======================
spec        means                   spec        means
==========  ======================  ==========  ======================
``^1.2.3``  ``>=1.2.3,<2.0.0``      ``~1.2.3``  ``>=1.2.3,<1.3.0``
``^1.2``    ``>=1.2,<2.0.0``        ``~1.2``    ``>=1.2,<1.3.0``
``^1``      ``>=1,<2.0.0``          ``~1``      ``>=1,<2.0.0``
``^0.2.3``  ``>=0.2.3,<0.3.0``      ``~0.2.3``  ``>=0.2.3,<0.3.0``
``^0.0.3``  ``>=0.0.3,<0.0.4``
``^0.0``    ``>=0.0,<0.1.0``        ``^0``      ``>=0,<1.0.0``
==========  ======================  ==========  ======================

``~=`` is PEP 440's compatible-release operator and is left as it is. Clauses combine with commas
(``^1.2,!=1.4.0``). The result is a PEP 440 specifier set, so pre-releases behave as in pip: the
upper bound ``<2.0.0`` excludes ``2.0.0rc1`` as well.
"""

from __future__ import annotations

from ..errors import UsageError

#: The hint every spec error shows.
SPEC_EXAMPLES = "examples: name@1.2.0, name==1.2.0, name@^1.2 (>=1.2,<2), name@~1.2.3 (>=1.2.3,<1.3), name@>=1,<2"


def _release(text: str, raw: str) -> tuple[int, ...]:
    from packaging.version import InvalidVersion, Version

    try:
        version = Version(text)
    except InvalidVersion:
        raise UsageError(f"{raw!r}: {text!r} is not a version", hint=SPEC_EXAMPLES) from None
    if version.epoch or version.local:
        raise UsageError(f"{raw!r}: ^ and ~ take a plain version (no epoch, no local part)", hint=SPEC_EXAMPLES)
    return version.release  # as written: ^1.2 has two components


def _upper(operator: str, parts: tuple[int, ...]) -> str:
    padded = list(parts) + [0] * (3 - len(parts))
    major, minor, patch = padded[:3]
    if operator == "~":
        bump = 0 if len(parts) == 1 else 1  # ~1 -> <2.0.0, ~1.2[.3] -> <1.3.0
    elif major > 0 or len(parts) == 1:
        bump = 0  # ^1.2.3 -> <2.0.0, ^0 -> <1.0.0
    elif minor > 0 or len(parts) == 2:
        bump = 1  # ^0.2.3 -> <0.3.0, ^0.0 -> <0.1.0
    else:
        bump = 2  # ^0.0.3 -> <0.0.4
    upper = [major, minor, patch][: bump + 1]
    upper[bump] += 1
    return ".".join(str(p) for p in upper + [0] * (2 - bump))


def expand_spec(spec: str) -> str:
    """``spec`` as a PEP 440 specifier set: each ``^X`` / ``~X`` clause becomes ``>=X,<UPPER``."""
    if "^" not in spec and "~" not in spec.replace("~=", ""):
        return spec
    clauses = []
    for clause in (c.strip() for c in spec.split(",")):
        if clause.startswith("^") or (clause.startswith("~") and not clause.startswith("~=")):
            operator, version = clause[0], clause[1:].strip()
            parts = _release(version, spec)
            clauses += [f">={version}", f"<{_upper(operator, parts)}"]
        else:
            clauses.append(clause)
    return ",".join(clauses)
