"""Saving and restoring a whole composition (``AdapterModel.save_setup`` / ``load_setup``).

A setup file records, per adapter, its method, where it comes from and its format, plus the active
block and what is merged. Adapters created or trained in this session have no source to point to,
so they are saved with it first, and recorded relative to the setup file:

* ``save_setup("my-setup")`` (a folder: any path not ending in ``.json``) writes
  ``my-setup/setup.json`` and ``my-setup/adapters/<name>``: one folder to copy or share;
* ``save_setup("my-setup.json")`` writes that file and ``my-setup.adapters/<name>`` beside it.

``load_setup`` takes either the folder or the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..composition import block_from_dict
from ..errors import UsageError
from ..plugin.registry import get_method
from ..toolkit.weights import write_json

if TYPE_CHECKING:
    from .model import AdapterModel

SETUP_VERSION = 1


SETUP_NAME = "setup.json"


def _locations(path: Path) -> tuple[Path, Path]:
    """(the setup file, the folder trained adapters are saved in) for ``save_setup(path)``."""
    if path.suffix.lower() == ".json" and not path.is_dir():
        return path, path.parent / f"{path.stem}.adapters"
    return path / SETUP_NAME, path / "adapters"


def save_setup(am: AdapterModel, path: str | Path) -> Path:
    setup_file, saved_dir = _locations(Path(path))
    adapters = {}
    for name, info in am.adapters.items():
        source = info.source
        if source is None or info.trainable:
            target = saved_dir / name
            formats = get_method(info.method).formats  # e.g. bottleneck: AdapterHub format only
            # only the AdapterHub format holds an adapter's own head
            wanted = "adapters" if info.head is not None else formats[0]
            am.save_adapter(target, name, format=wanted if wanted in formats else formats[0])
            source = target.relative_to(setup_file.parent).as_posix()  # moves with the setup
        adapters[name] = {"method": info.method, "source": source, "format": info.format}
    active = am.active_setup
    data = {
        "version": SETUP_VERSION,
        "adapters": adapters,
        "active": None if active is None else active.to_dict(),
        "merged": am.merged,
    }
    return write_json(setup_file, data, sort_keys=False)


def load_setup(am: AdapterModel, path: str | Path, *, allow_pickle: bool = False) -> None:
    path = Path(path)
    if path.is_dir():
        path = path / SETUP_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        adapters = data["adapters"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not an adapterhub setup file ({exc})") from None
    for name, entry in adapters.items():
        if name not in am.adapters:
            source = entry["source"]
            beside = path.parent / source  # saved with the setup: relative to the file
            if not Path(source).is_absolute() and beside.is_dir():
                source = beside
            am.load_adapter(source, name=name, allow_pickle=allow_pickle)
    active = data.get("active")
    am.set_adapter(None if active is None else block_from_dict(active))
    if data.get("merged"):
        am.merge_adapter(list(data["merged"]), list(data["merged"].values()))
