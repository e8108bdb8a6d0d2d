"""``adapterhub export``: merge adapters into a base model and write a plain transformers checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .options import client_options
from .output import emit_json, human_size, info, json_option

def _weights(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated numbers, e.g. 0.7,0.3",
                                 param_hint="--weights") from None


@click.command("export")
@click.argument("adapters", nargs=-1, required=True)
@click.option("--base", required=True, metavar="PATH|REPO_ID",
              help="The base checkpoint: a folder or a Hub repo id (org/name[@revision]), safetensors.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (must not exist); it appears only once the export is complete.")
@click.option("--weights", metavar="W1,W2,...", help="One weight per adapter, in order (default 1 each).")
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32"]), help="Dtype of the output (default: the base's).")
@click.option("--max-shard-size", default="2GB", show_default=True, metavar="SIZE", help="Largest output shard.")
@click.option("--push", metavar="REPO_ID", help="Upload the finished checkpoint to this Hub repo (created if missing).")
@click.option("--private", is_flag=True, help="With --push: create the repo as private.")
@click.option("--token", metavar="TOKEN", help="With --push: a Hub write token (default: HF_TOKEN or a saved login).")
@click.option("--allow-pickle", is_flag=True, help="Read adapters with pickled weights (torch.load weights_only).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@client_options
@json_option
def export_cmd(adapters: tuple[str, ...], base: str, out: Path, weights: str | None, dtype: str | None,
               max_shard_size: str, push: str | None, private: bool, token: str | None, allow_pickle: bool,
               quiet: bool, as_json: bool, settings: Any) -> None:
    """Merge ADAPTERS (registry names, Hub repo ids or folders; mergeable methods: LoRA family, IA3,
    BitFit), in order, into the base model and write a plain transformers checkpoint to --out.

    The checkpoint is streamed one tensor at a time, so peak memory stays near the largest shard
    plus the adapters whatever the model size. The merge runs in float32 and is rounded once; tied
    weights stay tied. Every adapter is installed and verified first, and everything that can be
    checked is checked before anything is written. Ctrl-C leaves nothing behind (exit status 130).
    """
    from ..errors import InterruptedByUser
    from ..publish.export import export

    try:
        result = export(list(adapters), base=base, out=out, weights=_weights(weights), dtype=dtype,
                        max_shard_size=max_shard_size, push=push, private=private, token=token,
                        settings=settings, progress=not (quiet or as_json), allow_pickle=allow_pickle)
    except KeyboardInterrupt:
        raise InterruptedByUser(f"interrupted: nothing was written to {out}") from None
    if as_json:
        emit_json(result.to_json())
        return
    for adapter in result.adapters:
        version = f" {adapter.version}" if adapter.version else ""
        info(f"merged {adapter.name}{version} [{adapter.method}] weight {adapter.weight:g}")
    for note in result.notes:
        info(f"note: {note}")
    size = sum(s.nbytes for s in result.shards)
    click.echo(f"exported {result.out} ({len(result.shards)} shard(s), {human_size(size)}, "
               f"{result.merged_tensors} tensors merged) in {result.seconds:.1f}s")
    if result.pushed:
        click.echo(f"pushed {result.pushed['repo_id']} commit {result.pushed['commit']}")


def register(cli: click.Group) -> None:
    cli.add_command(export_cmd)
