"""Where ``AdapterModel.load_adapter`` finds an adapter: a local directory as is, anything else
(a registry name or a Hub repo id) installed into the verified store through the client."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import AdapterHubError, DownloadError, OfflineError, ResolutionError, UsageError


def local_adapter_dir(source: str | Path, revision: str | None) -> Path | None:
    """``source`` as a local adapter directory, or None when it names something to install.

    A Path or an existing directory is local (``hf://org/repo`` forces the Hub); a revision only
    makes sense for Hub sources.
    """
    text = str(source)
    if isinstance(source, Path) or (not text.startswith("hf://") and Path(text).expanduser().is_dir()):
        path = Path(text).expanduser()
        if not path.is_dir():
            raise UsageError(f"{path}: no such adapter directory")
        if revision is not None:
            raise UsageError(
                f"revision={revision!r} given for the local directory {path}",
                hint="revisions apply to Hub repos: pass a repo id (org/repo) or drop revision=",
            )
        return path
    return None


def install(source: str, revision: str | None) -> Path:
    """Install ``source`` through the client (verified store); unresolvable sources say what was tried."""
    from ..client import Client  # lazily: it pulls in the Hub client

    client = Client()
    try:
        return client.install([source], revision=revision).results[0].path
    except (ResolutionError, DownloadError, OfflineError, UsageError) as exc:
        settings = client.settings
        tried = [f"a local directory: {Path(source).expanduser().resolve()} does not exist"]
        if not _looks_like_path(source):
            tried.append(
                f"a registry name in the index ({settings.index or 'bundled index'}) and a Hub repo at "
                f"{settings.public_endpoint}{' (offline)' if settings.offline else ''}: {exc.message}"
            )
        raise type(exc)(
            f"cannot load adapter {source!r}; tried\n" + "\n".join(f"  - {t}" for t in tried),
            hint=exc.hint or "give an adapter directory, a registry name (ns/name@version) or a Hub repo id (org/repo)",
        ) from exc


def _looks_like_path(source: str) -> bool:
    from ..client import parse_source

    try:
        return parse_source(source).kind == "local"
    except AdapterHubError:
        return False


def default_name(source: str, path: Path) -> str:
    raw = source.rstrip("/").split("/")[-1].split("@")[0] or path.name
    cleaned = re.sub(r"[^A-Za-z0-9_\-]", "_", raw).strip("_")
    return cleaned or "adapter"
