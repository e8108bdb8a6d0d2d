"""``adapterhub merge``: combine installed adapters into a new, publishable adapter folder.

The sources (registry names, Hub repo ids, local folders) go through the client exactly as
``adapterhub install`` takes them: planned, downloaded, every file's sha256 verified. The plan is
printed before anything happens. The combination is ``AdapterModel.add_weighted_adapter``; the
folder written holds the adapter (PEFT's format by default), ``merge.json`` (the provenance: each
source's name, version, commit and sha256, the weights, the combination type and its parameters)
and a model card that says the same, which ``adapterhub push`` keeps in the card it publishes.
The folder appears whole or not at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .options import client_options
from .output import emit_json, info, json_option

if TYPE_CHECKING:  # pragma: no cover
    from ..client import InstallResult

PROVENANCE_NAME = "merge.json"
PROVENANCE_VERSION = 1


def _weights(raw: str, count: int) -> list[float]:
    from ..errors import UsageError

    try:
        weights = [float(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--weights {raw!r}: expected numbers separated by commas, e.g. 0.7,0.3") from None
    if len(weights) != count:
        raise UsageError(f"--weights {raw!r}: {len(weights)} weights for {count} sources",
                         hint="give one weight per SOURCE, in the same order")
    return weights


def _check_out(out: Path, force: bool) -> None:
    from ..errors import UsageError

    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise UsageError(f"--out {out}: already exists and is not empty", hint="choose another folder or pass --force")


def _check_base(base: Path) -> None:
    from ..errors import UsageError

    if not (base / "config.json").is_file():
        raise UsageError(f"--base {base}: not a model folder (no config.json)",
                         hint="give a local copy of the base model (a folder save_pretrained wrote)")


def source_record(result: InstallResult, weight: float) -> dict[str, Any]:
    """One source's provenance: what was asked, what it resolved to, its files and their digest."""
    record = result.record
    files = sorted((f.to_dict() for f in record.files), key=lambda f: f["path"])
    listing = "".join(f"{f['sha256']}  {f['path']}\n" for f in files)  # what `sha256sum` prints
    return {
        "requested": result.requested,
        "name": result.name or record.display_name,
        "version": result.version,
        "source": record.source.to_dict(),
        "commit": record.commit,
        "method": record.method.name,
        "sha256": hashlib.sha256(listing.encode()).hexdigest(),
        "files": files,
        "weight": weight,
    }


def render_card(provenance: dict[str, Any]) -> str:
    """README.md of the merged folder: what it is and where every part came from."""
    combination = provenance["combination"]
    lines = [f"# {provenance['adapter']['name']}", "",
             f"A **{provenance['method']}** adapter made by `adapterhub merge` from {len(provenance['sources'])} "
             f"adapters with `{combination['combination_type']}`.", "",
             "## Provenance", "", "| source | version | commit | sha256 | weight |", "|---|---|---|---|---|"]
    for s in provenance["sources"]:
        lines.append(f"| `{s['name']}` | {s['version'] or '-'} | `{s['commit']}` | `{s['sha256']}` | {s['weight']} |")
    lines += ["", "`sha256` is the digest of the source's file list as `sha256sum` prints it (every file's "
              "sha256 is in `merge.json`).", "", "| parameter | value |", "|---|---|"]
    lines += [f"| {key} | {json.dumps(value)} |" for key, value in combination.items()]
    lines += ["", f"Base model: `{provenance['base_model']['name_or_path']}`.", ""]
    return "\n".join(lines)


def _progress(enabled: bool):
    """A ``progress(done, total)`` callback drawing a bar on stderr for merges that take a while."""
    from tqdm.auto import tqdm

    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, unit="module", desc="merging", file=sys.stderr, delay=0.5,
                                disable=None if enabled else True, leave=False)
        state["bar"].n = done
        state["bar"].refresh()
        if done >= total:
            state["bar"].close()

    return update


def _write_folder(out: Path, force: bool, write: Any) -> list[str]:
    """Run ``write(staging_dir)``, then put the staging folder at ``out`` (whole or not at all)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    old = None
    try:
        write(staging)
        files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        if out.exists():
            _check_out(out, force)
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return files


@click.command("merge")
@click.argument("sources", nargs=-1, required=True)
@click.option("--weights", required=True, metavar="W1,W2,...", help="One weight per SOURCE (negative subtracts).")
@click.option("--combination", "combination_type", metavar="TYPE",
              help="svd (default for LoRA), linear, cat, ties, ties_svd, dare_linear, dare_ties, dare_linear_svd, "
                   "dare_ties_svd, magnitude_prune, magnitude_prune_svd; IA3 and bottleneck adapters: linear.")
@click.option("--density", type=float, help="Fraction of values kept by the pruning types (0..1).")
@click.option("--svd-rank", type=int, help="Rank of the result of the *svd types (default: the largest source rank).")
@click.option("--svd-clamp", type=float, help="Clamp the SVD factors at this quantile (0..1].")
@click.option("--majority-sign", "majority_sign_method", type=click.Choice(["total", "frequency"]), default="total",
              show_default=True, help="How the TIES types elect each value's sign.")
@click.option("--seed", type=int, help="Seed of the DARE types' random masks.")
@click.option("--base", "base", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The base model the sources were trained on (a local model folder).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Folder to write the new adapter to.")
@click.option("--name", "adapter_name", default="merged", show_default=True, help="The new adapter's name.")
@click.option("--format", "fmt", type=click.Choice(["peft", "adapters"]),
              help="On-disk format (default: the method's own; PEFT's for LoRA and IA3).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--dry-run", is_flag=True, help="Print the plan and stop.")
@click.option("-q", "--quiet", is_flag=True, help="No plan, no progress bars.")
@client_options
@json_option
def merge_command(sources: tuple[str, ...], weights: str, combination_type: str | None, density: float | None,
                  svd_rank: int | None, svd_clamp: float | None, majority_sign_method: str, seed: int | None,
                  base: Path, out: Path, adapter_name: str, fmt: str | None, force: bool, dry_run: bool, quiet: bool,
                  as_json: bool, settings: Any) -> None:
    """Combine the adapters SOURCES (registry names, Hub repos, local folders) into a new adapter in --out.

    Example: adapterhub merge domain/lora task/lora --weights 0.7,0.3 --combination ties --density 0.5
    --base ./base-model --out ./merged; then `adapterhub push ./merged --repo ns/name --version 1.0.0`.
    """
    from ..client import Client
    from ..plugin.weighted import build_request
    from .install import print_plan

    parsed = _weights(weights, len(sources))
    options = {"svd_rank": svd_rank, "svd_clamp": svd_clamp, "density": density,
               "majority_sign_method": majority_sign_method, "seed": seed}
    if combination_type is not None:  # otherwise the method's default, known once the sources are read
        build_request([f"source{i}" for i in range(len(sources))], parsed, adapter_name, combination_type, **options)
    _check_base(base)
    _check_out(out, force)
    client = Client(settings, progress=not (quiet or as_json))
    plan = client.plan(list(sources))
    if not (quiet or as_json):
        print_plan(plan)
        info(f"Merge: {combination_type or 'default'} of {len(sources)} adapters, weights {parsed}, "
             f"base {base}, into {out}")
    if dry_run:
        if as_json:
            emit_json({"dry_run": True, "plan": plan.to_json()})
        return
    results = client.execute(plan)
    provenance, files, seconds = _merge(results, parsed, combination_type, options, base, out, adapter_name, fmt,
                                        force, progress=not (quiet or as_json))
    if as_json:
        emit_json({"dry_run": False, "plan": plan.to_json(), "out": str(out), "files": files,
                   "seconds": round(seconds, 3), "provenance": provenance})
        return
    combination = provenance["combination"]
    info(f"Merged {len(results)} {provenance['method']} adapters ({combination['combination_type']}) "
         f"in {seconds:.2f} s")
    click.echo(f"wrote {out} ({', '.join(files)})")
    click.echo(f"publish with: adapterhub push {out} --repo NAMESPACE/NAME --version X.Y.Z")


def _merge(results: list[InstallResult], weights: list[float], combination_type: str | None, options: dict,
           base: Path, out: Path, adapter_name: str, fmt: str | None, force: bool, *,
           progress: bool) -> tuple[dict[str, Any], list[str], float]:
    from .. import __version__
    from ..publish.load_check import load_base_model
    from ..runtime import weighted
    from ..runtime.model import AdapterModel

    am = AdapterModel(load_base_model(base).eval())
    names = [am.load_adapter(result.path, name=f"source{i}") for i, result in enumerate(results)]
    start = time.perf_counter()
    request = weighted.add_weighted_adapter(
        am, names, weights, adapter_name, combination_type or weighted.DEFAULT_COMBINATION, **options,
        progress=_progress(progress))
    seconds = time.perf_counter() - start
    merged = am.adapters[adapter_name]
    provenance = {
        "provenance_version": PROVENANCE_VERSION,
        "tool": f"adapterhub {__version__}",
        "method": merged.method,
        "combination": request.describe(),
        "sources": [source_record(r, w) for r, w in zip(results, weights, strict=True)],
        "base_model": {"name_or_path": merged.config.get("base_model_name_or_path")
                       or getattr(am.model.config, "_name_or_path", None),
                       "model_type": getattr(am.model.config, "model_type", None)},
        "adapter": {"name": adapter_name, "r": merged.config.get("r")},
    }

    def write(folder: Path) -> None:
        am.save_adapter(folder, adapter_name, format=fmt)
        (folder / PROVENANCE_NAME).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
        (folder / "README.md").write_text(render_card(provenance))

    return provenance, _write_folder(out, force, write), seconds


def register(cli: click.Group) -> None:
    cli.add_command(merge_command)
