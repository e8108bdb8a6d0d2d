"""Model cards on the local Hub: the YAML front matter of a repo's ``README.md``, read safely and
checked the way the Hub checks it.

The front matter feeds ``cardData`` and the tags of repo listings (:mod:`.read_api`) and the
``validate-yaml`` check the client runs before committing a README (:func:`validate_card`):
malformed YAML, or known metadata fields of the wrong shape (``model-index`` that is not a list of
results, ``tags`` that are not strings, ...) are errors that stop the commit; a card without
metadata is a warning. YAML aliases are refused, and cards over 1 MiB are not parsed.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from .objects import Commit
from .storage import HubStorage

_MAX_CARD_BYTES = 1 << 20
# The client's own rule for where the front matter is (huggingface_hub.repocard.REGEX_YAML_BLOCK).
_YAML_BLOCK = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(\r\n|\n|$))")
_EMPTY_BLOCK = re.compile(r"^\s*---(?:\r\n|\r|\n)---[ \t]*(?:\r\n|\n|$)")
_EMPTY_WARNING = (
    "Empty or missing yaml metadata in repo card (https://huggingface.co/docs/hub/model-cards#model-card-metadata)"
)


@functools.cache
def _card_loader() -> Any:
    """PyYAML's SafeLoader without aliases: a few hundred bytes of nested ``*alias`` references
    expand into gigabytes once the card is serialised into a JSON answer (a "billion laughs")."""
    import yaml

    class CardLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, "YAML aliases (*name) are not accepted in a model card", event.start_mark
                )
            return super().compose_node(parent, index)

    return CardLoader


def parse_front_matter(text: str) -> dict[str, Any]:
    """The YAML block at the top of a README; ``ValueError`` if it is malformed."""
    import yaml  # a huggingface_hub dependency; only needed when a card is read

    if _EMPTY_BLOCK.match(text):
        return {}
    match = _YAML_BLOCK.search(text)
    if match is None:
        if text.lstrip().startswith("---") and not text.lstrip().startswith("----"):
            raise ValueError("The README front matter is not closed by a '---' line.")
        return {}
    try:
        data = yaml.load(match.group(2), Loader=_card_loader())  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise ValueError(f"Invalid YAML in the README front matter: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("The README front matter must be a YAML mapping.")
    return data


def _is_str_or_str_list(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


_STRING_OR_LIST_FIELDS = ("tags", "datasets", "metrics", "language", "base_model", "license", "new_version")
_STRING_FIELDS = ("pipeline_tag", "library_name", "license_name", "license_link", "model_name", "pretty_name")


def _metadata_errors(data: dict[str, Any]) -> list[str]:
    errors = []
    for key in _STRING_OR_LIST_FIELDS:
        if key in data and data[key] is not None and not _is_str_or_str_list(data[key]):
            errors.append(f'"{key}" must be a string or an array of strings')
    for key in _STRING_FIELDS:
        if key in data and data[key] is not None and not isinstance(data[key], str):
            errors.append(f'"{key}" must be a string')
    index = data.get("model-index")
    if index is not None:
        if not isinstance(index, list):
            errors.append('"model-index" must be an array')
        else:
            for i, item in enumerate(index):
                if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                    errors.append(f'"model-index[{i}].name" is required and must be a string')
                elif not isinstance(item.get("results"), list):
                    errors.append(f'"model-index[{i}].results" is required and must be an array')
    return errors


def validate_card(text: str, repo_type: str = "model") -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` of a README's metadata, as ``POST /api/validate-yaml`` reports them."""
    try:
        data = parse_front_matter(text)
    except ValueError as exc:
        return [str(exc)], []
    if not data:
        return [], [_EMPTY_WARNING.replace("model-cards", f"{repo_type}-cards")]
    return _metadata_errors(data), []


@functools.lru_cache(maxsize=512)
def _card_from_blob(blob_path: Path) -> dict[str, Any]:
    try:
        return parse_front_matter(blob_path.read_text("utf-8", errors="replace"))
    except (ValueError, OSError):
        return {}


def card_data(storage: HubStorage, commit: Commit) -> dict[str, Any]:
    """The front matter of the commit's ``README.md``; empty when absent, too big or malformed."""
    entry = commit.files.get("README.md")
    if entry is None or entry.size > _MAX_CARD_BYTES:
        return {}
    return _card_from_blob(storage.blobs.path(entry.sha256))


def card_tags(card: dict[str, Any]) -> list[str]:
    """The tags the Hub shows for a card: its ``tags``, library and pipeline, ``base_model:X``."""
    tags = card.get("tags") or []
    tags = [tags] if isinstance(tags, str) else [str(t) for t in tags if isinstance(t, (str, int, float))]
    for key in ("library_name", "pipeline_tag"):
        if isinstance(card.get(key), str) and card[key] not in tags:
            tags.append(card[key])
    base = card.get("base_model")
    for b in [base] if isinstance(base, str) else base if isinstance(base, list) else []:
        tags.append(f"base_model:{b}")
    return tags
