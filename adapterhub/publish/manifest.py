"""The release manifest ``adapterhub.json``: building it, validating it against its schema, hashing files.

The manifest describes one version of one adapter and lists every file of the release except
itself, with size and sha256, so an installer can verify what it downloaded. Which files make up
the release is :func:`adapterhub.layout.adapter_files`; its ``plugin`` object is the
:class:`~adapterhub.client.models.MethodStamp` that install records in the lock.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..client.hashing import sha256_file
from ..client.models import FileEntry, MethodStamp
from ..errors import PublishError
from ..layout import MANIFEST_NAME, adapter_files

CARD_NAME = "README.md"
SCHEMA_VERSION = 1
#: Files that describe a release rather than belong to the adapter: regenerated on every push, so
#: they are left out when deciding whether a re-push of an existing version is byte-identical.
RELEASE_METADATA_FILES = frozenset({MANIFEST_NAME, CARD_NAME, ".gitattributes"})


def record_files(root: Path, *, exclude: Iterable[str] = (MANIFEST_NAME,)) -> list[FileEntry]:
    """Path/size/sha256 of the files under ``root`` (:func:`adapterhub.layout.adapter_files`), minus ``exclude``."""
    skipped = set(exclude)
    return [
        FileEntry(rel, (root / rel).stat().st_size, sha256_file(root / rel), "local")
        for rel in adapter_files(root)
        if rel not in skipped
    ]


def manifest_problems(manifest: Mapping[str, Any]) -> list[str]:
    """Every schema violation of ``manifest`` (plus duplicate paths), one readable line each."""
    from ..schema import schema_errors

    problems = [f"{MANIFEST_NAME}: {where}: {message}" for where, message in schema_errors("manifest", manifest)]
    paths = [f.get("path") for f in manifest.get("files") or [] if isinstance(f, dict)]
    duplicates = sorted({p for p in paths if paths.count(p) > 1})
    if duplicates:
        problems.append(f"{MANIFEST_NAME}: files: duplicate paths {duplicates}")
    return problems


def validate_manifest(manifest: Mapping[str, Any]) -> None:
    """Raise :class:`PublishError` listing every problem if ``manifest`` does not match the schema."""
    problems = manifest_problems(manifest)
    if problems:
        raise PublishError(
            "the release manifest is invalid",
            problems=problems,
            hint="fix the options that fill these fields (--name, --version, --task, --metric, ...)",
        )


#: The reproducible-builds convention (https://reproducible-builds.org/specs/source-date-epoch/):
#: when set, a release records this time instead of the clock, so pushing the same adapter with
#: the same options gives byte-identical manifests and cards, and on a fresh Hub the same commit id.
SOURCE_DATE_EPOCH_ENV = "SOURCE_DATE_EPOCH"


def _iso_utc(moment: _dt.datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def utc_now() -> str:
    return _iso_utc(_dt.datetime.now(_dt.timezone.utc))


def release_time() -> str:
    """The ``created`` time of a release: ``$SOURCE_DATE_EPOCH`` (UTC) when set, else now."""
    raw = os.environ.get(SOURCE_DATE_EPOCH_ENV, "").strip()
    if not raw:
        return utc_now()
    try:
        seconds = int(raw)
        if seconds < 0:
            raise ValueError(raw)
        return _iso_utc(_dt.datetime.fromtimestamp(seconds, _dt.timezone.utc))
    except (ValueError, OverflowError, OSError):
        raise PublishError(
            f"{SOURCE_DATE_EPOCH_ENV}={raw!r}: expected a whole number of seconds since 1970-01-01 UTC",
            hint=f"set it to e.g. $(git log -1 --format=%ct), or unset {SOURCE_DATE_EPOCH_ENV} to record the current time",
        ) from None


def build_manifest(
    *,
    name: str | None,
    version: str,
    method: MethodStamp,
    format: str,
    base_model: Mapping[str, Any],
    task: str | None,
    subtask: str | None,
    license: str | None,
    description: str | None,
    metrics: Mapping[str, Any],
    files: Iterable[FileEntry],
    created: str | None = None,
) -> dict[str, Any]:
    """The manifest dict, validated against ``schemas/manifest.schema.json``."""
    from .. import __version__

    manifest = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "version": version,
        "method": method.name,
        "plugin": method.to_manifest(),
        "format": format,
        "base_model": dict(base_model),
        "task": task,
        "subtask": subtask,
        "license": license,
        "description": description,
        "metrics": dict(metrics),
        "files": [f.to_dict() for f in files],
        "adapterhub_version": __version__,
        "created": created or release_time(),
    }
    validate_manifest(manifest)
    return manifest


def parse_metrics(items: Iterable[str]) -> dict[str, float | int | str]:
    """``["accuracy=0.91", "split=test"]`` -> ``{"accuracy": 0.91, "split": "test"}``."""
    metrics: dict[str, float | int | str] = {}
    problems = []
    for item in items:
        key, sep, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key or not raw:
            problems.append(f"--metric {item!r}: expected KEY=VALUE, e.g. accuracy=0.91")
            continue
        value: float | int | str
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = raw
        if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
            problems.append(f"--metric {item!r}: not a finite number")
            continue
        metrics[key] = value
    if problems:
        raise PublishError("bad --metric options", problems=problems)
    return metrics
