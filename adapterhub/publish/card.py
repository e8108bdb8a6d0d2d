"""The model card (README.md) of a pushed adapter: Hub YAML front matter plus a usage section.

The card is a pure function of the manifest (minus its creation time), so re-pushing the same
release produces the same card.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

#: ``library_name`` per on-disk format: the Hub shows a "Use this model" snippet for these.
_LIBRARY_BY_FORMAT = {"peft": "peft", "adapters": "adapter-transformers"}

# PEFT's save_pretrained writes a template card; its body carries no information worth keeping.
_PEFT_TEMPLATE_MARKER = "[More Information Needed]"


def card_metadata(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The YAML front matter for ``manifest``."""
    base = manifest["base_model"]
    tags = ["adapterhub", manifest["method"]]
    if manifest["format"] == "peft":
        tags.append("peft")
    if base.get("repo_id"):
        tags.append(f"base_model:adapter:{base['repo_id']}")
    for extra in (manifest.get("task"), manifest.get("subtask")):
        if extra and extra not in tags:
            tags.append(extra)
    meta: dict[str, Any] = {"library_name": _LIBRARY_BY_FORMAT[manifest["format"]]}
    if base.get("repo_id"):
        meta["base_model"] = base["repo_id"]
    meta["tags"] = tags
    if manifest.get("license"):
        meta["license"] = manifest["license"]
    return meta


def _user_card_body(existing: str | None) -> str | None:
    """The body of a README the user wrote themselves (front matter dropped), else None."""
    if not existing or _PEFT_TEMPLATE_MARKER in existing:
        return None
    body = re.sub(r"\A---\n.*?\n---\n", "", existing, count=1, flags=re.DOTALL).strip()
    return body or None


def install_commands(repo_id: str, version: str, name: str | None, *, index: str | None = None,
                     endpoint: str | None = None) -> list[str]:
    """``adapterhub install`` lines that work as printed: by registry name only with the index that
    lists the release (a name alone resolves through the bundled index), and from the Hub by repo id
    and tag (``--endpoint`` when the Hub is not the default one)."""
    hub = f" --endpoint {shlex.quote(endpoint)}" if endpoint else ""
    commands = []
    if name and index:
        commands.append(f"adapterhub install {name}@{version} --index {shlex.quote(index)}{hub}")
    commands.append(f"adapterhub install hf://{repo_id}@v{version}{hub}")
    return commands


def adapters_load_call(repo_id: str, version: str) -> str:
    """The ``adapters`` library call that loads release ``version`` of ``repo_id``. adapterhub writes
    safetensors only, and the library's default reads ``pytorch_adapter.bin``: ``use_safetensors=True``."""
    return f'model.load_adapter("{repo_id}", version="v{version}", use_safetensors=True)'


def adapters_library_usage(manifest: Mapping[str, Any], repo_id: str, base_id: str) -> list[str]:
    """Card lines showing how to load an AdapterHub-format release with the ``adapters`` library
    (its flex-head model class when the release carries a prediction head)."""
    has_head = any(f["path"] == "head_config.json" for f in manifest.get("files", []))
    model_lines = ([f'model = AutoAdapterModel.from_pretrained("{base_id}")  # the class that holds its head']
                   if has_head else [f'model = AutoModel.from_pretrained("{base_id}")', "adapters.init(model)"])
    return [
        "With the `adapters` library (AdapterHub format, safetensors weights):",
        "",
        "```python",
        "import adapters" if not has_head else "from adapters import AutoAdapterModel",
        *([] if has_head else ["from transformers import AutoModel"]),
        *model_lines,
        f"name = {adapters_load_call(repo_id, manifest['version'])}",
        "model.set_active_adapters(name)",
        "```",
        "",
    ]


def render_card(manifest: Mapping[str, Any], repo_id: str, *, existing_readme: str | None = None,
                auto_class: str = "AutoModel", num_labels: int | None = None) -> str:
    """The full README.md text: front matter, summary, usage snippet, metrics, files.

    ``auto_class`` / ``num_labels``: how to load the base model for this adapter (a sequence
    classification LoRA needs ``AutoModelForSequenceClassification`` with its label count).
    """
    import yaml  # a hard dependency of huggingface_hub

    meta = yaml.safe_dump(card_metadata(manifest), sort_keys=False, allow_unicode=True).strip()
    name = manifest.get("name")
    version = manifest["version"]
    reference = f"hf://{repo_id}@v{version}"
    base = manifest["base_model"]
    base_id = base.get("repo_id") or "<base model>"
    title = name or repo_id

    lines = [f"---\n{meta}\n---", "", f"# {title}", ""]
    if manifest.get("description"):
        lines += [manifest["description"].strip(), ""]
    lines += [
        f"A **{manifest['method']}** adapter (version {version}, {manifest['format']} format) for "
        f"`{base_id}`, published with adapterhub.",
        "",
        "| field | value |",
        "|---|---|",
        f"| method | `{manifest['method']}` (plugin `{manifest['plugin']['name']}` "
        f"{manifest['plugin']['version']}) |",
        f"| base model | `{base_id}`"
        + (f" @ `{base['revision']}`" if base.get("revision") else "")
        + (f" ({base['model_type']})" if base.get("model_type") else "")
        + " |",
        f"| task | {manifest.get('task') or '-'}"
        + (f" / {manifest['subtask']}" if manifest.get("subtask") else "")
        + " |",
        f"| license | {manifest.get('license') or '-'} |",
        "",
        "## Usage",
        "",
        "From this Hub, by repo id and tag (set `HF_ENDPOINT` to the Hub's URL first unless it is huggingface.co):",
        "",
        "```bash",
        f"adapterhub install {reference}",
        "```",
        "",
    ]
    if name:
        lines += [
            f"By its registry name `{name}`, from a registry index that lists this release "
            "(`adapterhub push --index-dir` writes one; pass it with `--index` or `ADAPTERHUB_INDEX`):",
            "",
            "```bash",
            f"adapterhub install {name}@{version} --index INDEX",
            "```",
            "",
        ]
    labels = f", num_labels={num_labels}" if num_labels else ""
    lines += [
        "```python",
        f"from transformers import {auto_class}",
        "from adapterhub import AdapterModel",
        f'model = AdapterModel({auto_class}.from_pretrained("{base_id}"{labels}))',
        f'model.set_adapter(model.load_adapter("{reference}"))',
        "```",
        "",
    ]
    if manifest["format"] == "adapters":
        lines += adapters_library_usage(manifest, repo_id, base_id)
    metrics = manifest.get("metrics") or {}
    if metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in sorted(metrics.items())]
        lines.append("")
    lines += ["## Files", "", "| file | size | sha256 |", "|---|---|---|"]
    lines += [f"| `{f['path']}` | {f['size']} | `{f['sha256'][:16]}…` |" for f in manifest["files"]]
    lines += ["", "The full list with hashes is in `adapterhub.json`.", ""]
    user_body = _user_card_body(existing_readme)
    if user_body:
        lines += ["## Details", "", user_body, ""]
    return "\n".join(lines)
