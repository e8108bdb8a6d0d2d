"""Model cards on the local Hub: the YAML front matter of a repo's ``README.md``, read safely.

The front matter feeds ``cardData`` and the tags of repo listings (:mod:`.read_api`) and the
``validate-yaml`` check the client runs before uploading a README. YAML aliases are refused, and
cards over 1 MiB are not parsed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from .objects import Commit
from .storage import HubStorage

_MAX_CARD_BYTES = 1 << 20


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

    if not text.startswith("---"):
        return {}
    lines = text.splitlines()
    if lines[0].strip() != "---":
        return {}
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            try:
                data = yaml.load("\n".join(lines[1:i]), Loader=_card_loader())  # noqa: S506 - a SafeLoader
            except yaml.YAMLError as exc:
                raise ValueError(f"Invalid YAML in the README front matter: {exc}") from exc
            if data is None:
                return {}
            if not isinstance(data, dict):
                raise ValueError("The README front matter must be a YAML mapping.")
            return data
    raise ValueError("The README front matter is not closed by a '---' line.")


@functools.lru_cache(maxsize=512)
def _card_from_blob(blob_path: Path) -> dict[str, Any]:
    try:
        return parse_front_matter(blob_path.read_text("utf-8", errors="replace"))
    except ValueError:
        return {}


def card_data(storage: HubStorage, commit: Commit) -> dict[str, Any]:
    """The front matter of the commit's ``README.md``; empty when absent, too big or malformed."""
    entry = commit.files.get("README.md")
    if entry is None or entry.size > _MAX_CARD_BYTES:
        return {}
    return _card_from_blob(storage.blob_path(entry.sha256))


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
