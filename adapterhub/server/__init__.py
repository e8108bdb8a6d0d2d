"""The local Hugging Face Hub compatible server behind ``adapterhub hub serve``.

The real ``huggingface_hub`` client, PEFT and transformers work against it unchanged (point them at
it with ``HF_ENDPOINT`` or ``endpoint=``). "The Hub" elsewhere in adapterhub means whatever remote
the client talks to; this package is one such remote, run locally. It imports nothing from
adapterhub but :mod:`adapterhub.errors` and :mod:`adapterhub.fileio`.

Modules, from the bottom up:

* :mod:`.errors`: :class:`~.errors.HubError` (an HTTP status plus a Hub error code) and its
  common constructors, in the Hub's wording;
* :mod:`.names`: what is a valid repo type, user, organisation or repo name, file path, branch or
  tag name (case-insensitive ids);
* :mod:`.objects`: the data model (tree entries, commits, repos, commit operations, LFS pointers);
* :mod:`.patterns`: ``.gitattributes`` / ``.gitignore`` patterns and the Hub's LFS rule;
* :mod:`.blobs`: contents by sha256, which repo owns which blob, garbage collection;
* :mod:`.storage`: :class:`~.storage.HubStorage`, repos (moves, redirects), refs and commits on disk;
* :mod:`.history`: writing commits, super-squash, rewriting history without LFS objects;
* :mod:`.auth`: users, organisations and roles, tokens, signed upload URLs;
* :mod:`.cards`: model card front matter and its validation;
* :mod:`.routing`: the route table, raw-path matching, :class:`~.routing.HubState` (who may read,
  write, administer, download), response and error shapes;
* :mod:`.read_api`, :mod:`.write_api`, :mod:`.lfs`, :mod:`.prs`, :mod:`.access`, :mod:`.orgs`:
  the endpoints (reads; repos and commits; git-LFS; discussions and pull requests; gated repos and
  likes; accounts);
* :mod:`.app`: :func:`~.app.create_app`, which builds the Flask app;
* :mod:`.serving`: werkzeug's threaded server, in the foreground or in a thread;
* :mod:`.testing`: ``running_hub`` for tests and demos.
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
