"""A small Hugging Face Hub compatible server: ``adapterhub hub serve``.

The real ``huggingface_hub`` client, PEFT and transformers work against it unchanged (point them at
it with ``HF_ENDPOINT`` or ``endpoint=``). Modules: :mod:`.storage` (blobs, repos, refs, commits on
disk), :mod:`.auth` (users, tokens, signed upload URLs), :mod:`.app` (routing and errors),
:mod:`.read_api` / :mod:`.write_api` (the endpoints), :mod:`.serving` (werkzeug's threaded server)
and :mod:`.testing` (``running_hub`` for tests).
"""

from __future__ import annotations

__all__ = ["create_app", "running_hub", "start_in_thread"]


def __getattr__(name: str):  # lazy: importing adapterhub.server must not pull in Flask
    if name == "create_app":
        from .app import create_app

        return create_app
    if name in ("running_hub", "start_in_thread"):
        from . import testing

        return getattr(testing, name)
    raise AttributeError(name)
