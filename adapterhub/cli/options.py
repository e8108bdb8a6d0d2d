"""Options shared by several commands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click


def client_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--endpoint/--index/--offline, turned into a ``settings`` keyword argument."""

    @click.option("--endpoint", metavar="URL", help="Hub endpoint (default: $HF_ENDPOINT, else huggingface.co).")
    @click.option("--index", "index", metavar="PATH|URL",
                  help="Registry index: a dir, index.json, http(s) URL or hf://ns/repo/path[@rev] (default: "
                  "$ADAPTERHUB_INDEX, else the bundled one). An http(s) URL is downloaded again on every run "
                  "(no ETag check); hf:// goes through the huggingface_hub cache (ETag); --offline uses the last copy.")
    @click.option("--offline", is_flag=True, default=None, help="Never touch the network (also: HF_HUB_OFFLINE=1, ADAPTERHUB_OFFLINE=1).")
    @functools.wraps(func)
    def wrapper(*args: Any, endpoint: str | None, index: str | None, offline: bool | None, **kwargs: Any) -> Any:
        from ..settings import get_settings

        try:
            kwargs["settings"] = get_settings(endpoint=endpoint, index=index, offline=offline)
        except ValueError as exc:  # a malformed ADAPTERHUB_* variable
            raise click.UsageError(str(exc)) from None
        return func(*args, **kwargs)

    return wrapper
