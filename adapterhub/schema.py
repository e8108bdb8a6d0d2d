"""Load the bundled JSON Schemas (from the installed package, else the source tree) and validate.

Errors come back as a list of ``(json_path, message)`` so callers can report every problem at once.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

SCHEMA_FILES = {
    "index-entry": "index-entry.schema.json",
    "index": "index.schema.json",
    "lock": "lock.schema.json",
    "manifest": "manifest.schema.json",
}


def _schema_text(filename: str) -> str:
    try:
        resource = resources.files("adapterhub.schemas") / filename
        if resource.is_file():
            return resource.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    # Running from a source checkout without an install: <repo>/schemas/.
    source_tree = Path(__file__).resolve().parents[1] / "schemas" / filename
    if source_tree.is_file():
        return source_tree.read_text(encoding="utf-8")
    raise FileNotFoundError(f"schema {filename} is neither in the adapterhub.schemas package nor in {source_tree.parent}")


@functools.cache
def load_schema(kind: str) -> dict[str, Any]:
    """The parsed schema ``kind`` (``index-entry``, ``index``, ``lock``, ``manifest``)."""
    return json.loads(_schema_text(SCHEMA_FILES[kind]))


@functools.cache
def _validator(kind: str) -> Any:
    import jsonschema
    from referencing import Registry, Resource

    registry = Registry()
    for name in ("index-entry", "lock"):
        schema = load_schema(name)
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
    schema = load_schema(kind)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)


def json_path(parts: Any) -> str:
    """``$.versions["1.0.0"].files[0].path`` from a jsonschema error path."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.replace("_", "").replace("-", "").isalnum() and not part[:1].isdigit():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


def schema_errors(kind: str, data: Any) -> list[tuple[str, str]]:
    """Every schema violation of ``data`` as ``(json_path, message)``, sorted by path."""
    errors = []
    for error in _validator(kind).iter_errors(data):
        # For oneOf/anyOf, the most specific sub-error says what to fix.
        best = error
        if error.context:
            best = min(error.context, key=lambda e: -len(e.absolute_path))
        errors.append((json_path(best.absolute_path), _explain(best)))
    return sorted(set(errors))


def _explain(error: Any) -> str:
    if error.validator == "additionalProperties":
        return f"{error.message} (remove it, or prefix a top-level extension key with 'x-')"
    if error.validator == "pattern":
        what = error.schema.get("description") or f"the format {error.validator_value!r}"
        return f"{error.instance!r} does not match {what}"
    return error.message
