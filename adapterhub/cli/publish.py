"""``adapterhub push`` (publish an adapter as a tagged Hub release + registry entry) and ``adapterhub convert``."""

from __future__ import annotations

from pathlib import Path

import click

from .output import emit_json, human_size, info, json_option


@click.command("push")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repo", "repo_id", required=True, metavar="NS/NAME", help="Hub repo to push to (created if missing).")
@click.option("--version", "version", required=True, metavar="X.Y.Z", help="Release version; tagged vX.Y.Z, immutable.")
@click.option("--name", metavar="NS/NAME", help="Registry name (default: the repo id, lowercased).")
@click.option("--task", help="Task, kebab-case (default: from PEFT's task_type).")
@click.option("--subtask", help="Subtask, e.g. a language or a dataset.")
@click.option("--license", "license_", metavar="SPDX", help="License of the adapter, e.g. apache-2.0.")
@click.option("--description", help="One-paragraph description for the card and the index.")
@click.option("--metric", "metrics", multiple=True, metavar="KEY=VALUE", help="An evaluation result (repeatable).")
@click.option("--base-model", metavar="REPO_ID|PATH", help="Base model repo id, or a local copy to check loading on.")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option("--endpoint", metavar="URL", help="Hub endpoint (default: HF_ENDPOINT, else huggingface.co).")
@click.option("--token", metavar="TOKEN", help="Hub write token (default: HF_TOKEN or a saved login).")
@click.option("--index-dir", type=click.Path(file_okay=False, path_type=Path), help="Registry index folder to add the version to.")
@click.option("--entry-out", type=click.Path(dir_okay=False, path_type=Path), help="Where to write the standalone entry file (default ./<name>-<version>.entry.json).")
@click.option("--exclude", "exclude", multiple=True, metavar="GLOB",
              help="Leave out files matching GLOB (a file name or a path in DIRECTORY; repeatable), e.g. the "
              "training state of a checkpoint folder: --exclude optimizer.pt --exclude training_args.bin.")
@click.option("--no-check", is_flag=True, help="Skip loading the adapter onto the base model.")
@click.option("--dry-run", is_flag=True, help="Validate and stage only; upload and write nothing.")
@json_option
def push_command(
    directory: Path,
    repo_id: str,
    version: str,
    name: str | None,
    task: str | None,
    subtask: str | None,
    license_: str | None,
    description: str | None,
    metrics: tuple[str, ...],
    base_model: str | None,
    private: bool,
    endpoint: str | None,
    token: str | None,
    index_dir: Path | None,
    entry_out: Path | None,
    exclude: tuple[str, ...],
    no_check: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Validate the adapter in DIRECTORY, push it to a Hub as tag vVERSION, and register it.

    The directory is not modified: the release (adapter files, adapterhub.json manifest and model
    card) is staged in a temporary folder. Re-pushing an existing version is a no-op when the
    adapter files are identical and an error otherwise.

    Reproducible releases: set SOURCE_DATE_EPOCH (seconds since 1970-01-01 UTC, the
    reproducible-builds convention) and the manifest's "created" time is that moment instead of
    now. The same adapter pushed with the same options then gives byte-identical files and, on a
    fresh Hub, the same commit id, which a registry entry can pin.
    """
    from ..publish import parse_metrics, push_directory

    result = push_directory(
        directory,
        repo_id=repo_id,
        version=version,
        name=name,
        task=task,
        subtask=subtask,
        license=license_,
        description=description,
        metrics=parse_metrics(metrics),
        base_model=base_model,
        private=private,
        endpoint=endpoint,
        token=token,
        index_dir=index_dir,
        entry_out=entry_out,
        check=not no_check,
        dry_run=dry_run,
        exclude=exclude,
        progress=info,
    )
    if as_json:
        emit_json(result.as_json())
        return
    for record in result.files:
        info(f"  {record.path:<40} {human_size(record.size):>10}  {record.sha256[:12]}")
    if result.dry_run:
        click.echo(f"dry run ok: {result.method} adapter, {len(result.files)} files, would be {repo_id}@{result.tag}")
        return
    state = "unchanged" if result.noop else "pushed"
    click.echo(f"{state} {repo_id}@{result.tag} commit {result.commit}")
    if result.entry_path:
        click.echo(f"entry: {result.entry_path}")
    for number, command in enumerate(result.install):
        click.echo(("install with: " if number == 0 else "          or: ") + command)
    if result.manifest.get("format") == "adapters":
        from ..publish.card import adapters_load_call

        click.echo(f"load with the adapters library: {adapters_load_call(repo_id, result.version)}")


@click.command("convert")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--to-safetensors", is_flag=True, required=True, help="Replace pickled weights with safetensors.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), help="Write a converted copy here instead of converting in place.")
@json_option
def convert_command(directory: Path, to_safetensors: bool, output: Path | None, as_json: bool) -> None:
    """Convert an adapter's pickled weights (*.bin, *.pt) to safetensors, loading them with weights_only."""
    from ..publish import convert_to_safetensors

    from ..layout import adapter_files, is_training_state

    pairs = convert_to_safetensors(directory, output)
    if as_json:
        emit_json([{"from": str(a), "to": str(b)} for a, b in pairs])
        return
    for source, target in pairs:
        click.echo(f"converted {source} -> {target.name}")
    training = [f for f in adapter_files(output or directory) if is_training_state(f)]
    if training:
        info(f"left as they are (training state, not adapter weights): {', '.join(training)}")


def register(cli: click.Group) -> None:
    cli.add_command(push_command)
    cli.add_command(convert_command)
