"""Register the demo adapters in the bundled registry index (registry_index/), the way any adapter is.

Starts a local Hub in a temporary folder, runs ``adapterhub push ... --index-dir registry_index`` for
each demo adapter (the same commands ``adapterhub demo`` runs), then ``adapterhub index build``.

    python examples/register_demo_adapters.py

Run it after ``examples/train_demo_adapters.py`` changed the adapters. The entries record every
file's sha256 and the release's repo and tag. Their ``revision`` is the commit id of this run's Hub:
commit ids hash the commit date, so ``adapterhub demo`` gets a new one on its fresh Hub each time; it
checks the adapter files it publishes against these entries and installs through an index of its own.
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
from pathlib import Path

from adapterhub.client.index import atomic_write_text, dump_json
from adapterhub.demo.run import adapterhub_cli, publish_with_cli
from adapterhub.demo.tasks import DEMO_ORG, DEMO_TASKS
from adapterhub.hub.testing import running_hub

ROOT = Path(__file__).resolve().parents[1]
INDEX_DIR = ROOT / "registry_index"
NOTE = (
    "A demo adapter shipped inside the adapterhub package (adapterhub/demo/adapters/). `adapterhub demo` "
    "publishes it to a local Hub and installs it from there; the files and sha256s here are what it "
    "publishes. The revision is that of the reference run of examples/register_demo_adapters.py."
)


def say(message: str) -> None:
    print(message, file=sys.stderr)


def main() -> int:
    for task in DEMO_TASKS:  # regenerated from scratch: a version's files may have changed
        (INDEX_DIR / f"{task.name}.json").unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="adapterhub-register-") as tmp:
        token = secrets.token_urlsafe(24)
        with running_hub(Path(tmp) / "hub", {DEMO_ORG: token}) as hub:
            publish_with_cli(hub.url, token, INDEX_DIR, Path(tmp), say)
    for task in DEMO_TASKS:
        path = INDEX_DIR / f"{task.name}.json"
        entry = json.loads(path.read_text(encoding="utf-8"))
        entry["x-demo"] = NOTE
        atomic_write_text(path, dump_json(entry))
    adapterhub_cli(["index", "build", str(INDEX_DIR)], say)
    return 0


if __name__ == "__main__":
    sys.exit(main())
