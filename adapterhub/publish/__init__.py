"""Publishing: validate an adapter, push it to a Hub as an immutable tagged release, register it.

``import adapterhub.publish`` is light (no torch): the heavy work is imported inside the functions.
"""

from __future__ import annotations

from .convert import convert_to_safetensors
from .manifest import MANIFEST_NAME, build_manifest, manifest_problems, parse_metrics, validate_manifest
from .push import PushResult, push_adapter, push_directory
from .validate import ValidatedAdapter, validate_adapter_dir

__all__ = [
    "MANIFEST_NAME",
    "PushResult",
    "ValidatedAdapter",
    "build_manifest",
    "convert_to_safetensors",
    "manifest_problems",
    "parse_metrics",
    "push_adapter",
    "push_directory",
    "validate_adapter_dir",
    "validate_manifest",
]
