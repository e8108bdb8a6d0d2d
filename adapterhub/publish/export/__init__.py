"""``adapterhub export``: merge adapters into a base model and write a plain transformers checkpoint,
streaming one tensor at a time, so models larger than memory can be exported.

::

    from adapterhub import export

    result = export(["sentiment/minilm-vader"], base="path/or/org-repo", out="merged", dtype="bf16")
    result.out, result.shards, result.to_json()

Modules: :mod:`.api` (:func:`export`, the streaming merge), :mod:`.base` (the base checkpoint and its
architecture's skeleton), :mod:`.plan` (mapping every update onto a tensor and checking it before
anything is written), :mod:`.writer` (streamed safetensors shards, the index, the folder that appears
only when complete) and :mod:`.card` (the model card). A method takes part through
:meth:`adapterhub.plugin.AdapterMethod.merge_updates`.
"""

from __future__ import annotations

from .api import ExportResult, export

__all__ = ["ExportResult", "export"]
