"""``adapterhub index validate|build|add``: maintain a registry index directory."""

from __future__ import annotations

from pathlib import Path

import click

from .output import emit_json, info, json_option


#: Every index command works on this folder of the working directory unless told otherwise. Never
#: the index bundled inside the installed package: that one ships with adapterhub and is read-only.
DEFAULT_DIR = Path("registry_index")


def _directory(argument: str | None, option: str | None = None) -> Path:
    from ..errors import UsageError

    if argument and option and Path(argument) != Path(option):
        raise UsageError(f"two index directories given: {argument} and --dir {option}", hint="give one")
    return Path(argument or option or DEFAULT_DIR)


def _writable(root: Path) -> Path:
    """Refuse to write into the index an installed adapterhub ships (a pip install's package data)."""
    from ..client.index import bundled_index_path
    from ..errors import UsageError

    bundled = bundled_index_path()
    installed = bundled is not None and {"site-packages", "dist-packages"} & set(bundled.parts)
    if installed and root.resolve() == bundled.parent.resolve():
        raise UsageError(f"{root} is the registry index bundled inside the installed adapterhub package",
                         hint="write your own index elsewhere, e.g. ./registry_index (the default)")
    return root


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

    root = _directory(directory)
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
            "`adapterhub index add ENTRY.json DIR`",
        )
    if not as_json:
        info(f"OK: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} in {root}")


@index_group.command("build")
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Where to write (default DIRECTORY/index.json).")
@json_option
def build_cmd(directory: str | None, output: str | None, as_json: bool) -> None:
    """Validate the entry files in DIRECTORY (default ./registry_index) and compile them into one
    index.json; a folder with no entries is an error."""
    from ..client.authoring import build_index

    root = _writable(_directory(directory))
    out = build_index(root, output)
    if as_json:
        emit_json({"output": str(out)})
    else:
        info(f"Wrote {out}")


@index_group.command("add")
@click.argument("entry_file", type=click.Path(dir_okay=False, exists=True))
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--dir", "dir_option", type=click.Path(file_okay=False), help="Index directory, as the DIRECTORY argument.")
@json_option
def add_cmd(entry_file: str, directory: str | None, dir_option: str | None, as_json: bool) -> None:
    """Merge ENTRY_FILE (new versions of an adapter) into the index in DIRECTORY (default
    ./registry_index, created if missing) and rebuild its index.json; refuse changed versions."""
    from ..client.authoring import add_entry

    root = _writable(_directory(directory, dir_option))
    target, added = add_entry(root, entry_file)
    if as_json:
        emit_json({"entry": str(target), "added_versions": added})
    else:
        info(f"{target}: added {', '.join(added) if added else 'nothing (already present)'}; rebuilt {root / 'index.json'}")


def register(cli: click.Group) -> None:
    cli.add_command(index_group)
