"""Register the demo adapters in the bundled registry index (registry_index/), the way any adapter is.

Starts a local Hub in a temporary folder, runs ``SOURCE_DATE_EPOCH=... adapterhub push ... --index-dir
registry_index`` for each demo adapter (the very pushes ``adapterhub demo`` and ``adapterhub hub serve
--demo`` run), then ``adapterhub index build``.

    python examples/register_demo_adapters.py

Run it after ``examples/train_demo_adapters.py`` changed the adapters (or after anything that goes
into a release changed: the card template, the manifest, the adapterhub version). The pushes are
reproducible (fixed ``SOURCE_DATE_EPOCH``, same message and author) and the Hub's commit ids hash
only a commit's content, so the revisions recorded here are the ones every fresh demo Hub gets.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
from pathlib import Path

from adapterhub.client.authoring import build_index
from adapterhub.demo.publish import check_against_bundled, publish_demo_adapters
from adapterhub.demo.tasks import DEMO_ORG, DEMO_TASKS
from adapterhub.server.testing import running_hub

ROOT = Path(__file__).resolve().parents[1]
INDEX_DIR = ROOT / "registry_index"


def say(message: str) -> None:
    print(message, file=sys.stderr)


def main() -> int:
    for task in DEMO_TASKS:  # regenerated from scratch: a version's files may have changed
        (INDEX_DIR / f"{task.name}.json").unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="adapterhub-register-") as tmp:
        token = secrets.token_urlsafe(24)
        with running_hub(Path(tmp) / "hub", {DEMO_ORG: token}) as hub:
            published = publish_demo_adapters(hub.url, token, Path(tmp), say, index_dir=INDEX_DIR)
    say(f"  $ adapterhub index build {INDEX_DIR}")
    build_index(INDEX_DIR)
    # The installed package reads the index from the source tree (editable install): what was just
    # written must now be what a push produces.
    check_against_bundled(published)
    say("registered: " + ", ".join(f"{p['name']} @ {p['commit'][:12]}" for p in published))
    return 0


if __name__ == "__main__":
    sys.exit(main())
