"""``adapterhub index validate|build|add``: maintain a registry index directory."""

from __future__ import annotations

from pathlib import Path

import click

from .output import emit_json, info, json_option


def _default_dir() -> Path:
    if Path("registry_index").is_dir():
        return Path("registry_index")
    from ..client.index import bundled_index_path

    bundled = bundled_index_path()
    return bundled.parent if bundled else Path("registry_index")


@click.group("index")
def index_group() -> None:
    """Validate, compile and extend a registry index (per-entry files + index.json)."""


@index_group.command("validate")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@json_option
def validate_cmd(directory: str | None, as_json: bool) -> None:
    """Check every entry file in DIRECTORY (default ./registry_index); list all problems, exit 1 if any."""
    from ..client.authoring import validate_index_dir
    from ..errors import RegistryIndexError

    root = Path(directory) if directory else _default_dir()
    entries, problems = validate_index_dir(root)
    if as_json:
        emit_json({"ok": bool(entries) and not problems, "entries": sorted(entries),
                   "problems": [{"file": p.file, "path": p.path, "message": p.message} for p in problems]})
    if problems:
        raise RegistryIndexError(
            f"{root}: {len(problems)} problem(s) in the index\n" + "\n".join(f"  {p}" for p in problems),
            hint="fix each field listed (file: JSON path: problem), then run `adapterhub index validate` again",
        )
    if not entries:
        # An empty folder is almost always the wrong folder: "OK: 0 entries" would hide that.
        compiled = " (it has an index.json, but validate checks the entry files it is built from)" \
            if (root / "index.json").is_file() else ""
        raise RegistryIndexError(
            f"{root}: no index entries found (looked for entry files {root}/<namespace>/<name>.json){compiled}",
            hint="give the registry index directory (e.g. registry_index/), or add an entry with "
            "`adapterhub index add ENTRY.json --dir DIR`",
        )
    if not as_json:
        info(f"OK: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} in {root}")


@index_group.command("build")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Where to write (default DIRECTORY/index.json).")
@json_option
def build_cmd(directory: str | None, output: str | None, as_json: bool) -> None:
    """Validate the entry files and compile them into one index.json."""
    from ..client.authoring import build_index

    root = Path(directory) if directory else _default_dir()
    out = build_index(root, output)
    if as_json:
        emit_json({"output": str(out)})
    else:
        info(f"Wrote {out}")


@index_group.command("add")
@click.argument("entry_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Index directory (default ./registry_index).")
@json_option
def add_cmd(entry_file: str, directory: str | None, as_json: bool) -> None:
    """Merge ENTRY_FILE (new versions of an adapter) into the index; refuse changed versions."""
    from ..client.authoring import add_entry

    root = Path(directory) if directory else _default_dir()
    target, added = add_entry(root, entry_file)
    if as_json:
        emit_json({"entry": str(target), "added_versions": added})
    else:
        info(f"{target}: added {', '.join(added) if added else 'nothing (already present)'}; rebuilt {root / 'index.json'}")


def register(cli: click.Group) -> None:
    cli.add_command(index_group)
