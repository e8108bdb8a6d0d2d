"""``adapterhub train``: turn labelled data into a publishable adapter (thin over :mod:`adapterhub.train`)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from .output import emit_json, info, json_option

#: method options that always hold a list, even when given one value (``--target-modules query``)
_LIST_OPTIONS = {"target_modules", "modules_to_save", "feedforward_modules", "exclude_modules", "leave_out",
                 "layers_to_transform"}


def _value(text: str) -> Any:
    """A command-line value: JSON when it parses (8, 0.05, true, null, [..]), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def method_options(tokens: list[str]) -> dict[str, Any]:
    """``--r 8 --lora-alpha 16 --target-modules query,value --use-dora`` -> {"r": 8, ...}."""
    options: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or token == "--":
            raise UsageError(f"unexpected argument {token!r}", hint="method options look like --lora-alpha 16")
        key, has_value, value = token[2:].partition("=")
        key = key.replace("-", "_")
        if not has_value:
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value, i = tokens[i + 1], i + 1
            else:
                value = "true"  # a bare flag: --use-dora
        i += 1
        parsed: Any = [_value(v) for v in value.split(",")] if ("," in value and not value.startswith("[")) else _value(value)
        if key in _LIST_OPTIONS and not isinstance(parsed, list):
            parsed = [parsed]
        if key in options:  # repeated: --target-modules query --target-modules value
            previous = options[key] if isinstance(options[key], list) else [options[key]]
            parsed = previous + (parsed if isinstance(parsed, list) else [parsed])
        options[key] = parsed
    return options


@click.command("train", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--base", required=True, metavar="PATH|REPO_ID", help="Base model: a local folder, or a Hub repo id (org/name[@revision]: fetched, pinned and "
              "verified through the client).")
@click.option("--method", required=True, metavar="METHOD",
              help="lora, qlora, ia3, prompt_tuning, prefix_tuning, p_tuning, bottleneck, bitfit, or any other "
                   "trainable method of `adapterhub methods` (loha, lokr, oft, ...).")
@click.option("--task", required=True, type=click.Choice(["sequence-classification", "causal-lm"]),
              help="sequence-classification (columns text, label) or causal-lm (text, or prompt + completion).")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Training data: .jsonl or .csv.")
@click.option("--eval", "eval_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Held-out data (same columns), evaluated at the end.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Adapter folder to write (must not exist or be empty, unless --overwrite).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Method options as a JSON object (options on the command line win).")
@click.option("--epochs", type=float, default=3.0, show_default=True, help="Passes over the training data.")
@click.option("--lr", "learning_rate", type=float, help="Learning rate (default: the method's, see the README).")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--max-length", type=int, default=128, show_default=True, help="Tokens per example (longer ones are cut).")
@click.option("--max-steps", type=int, default=-1, help="Stop after this many optimizer steps (a quick check).")
@click.option("--gradient-checkpointing", is_flag=True, help="Recompute activations in the backward pass (less memory).")
@click.option("--overwrite", is_flag=True, help="Replace --out if it holds files.")
@json_option
@click.pass_context
def train_command(ctx: click.Context, base: str, method: str, task: str, data_path: Path, eval_path: Path | None,
                  out: Path, config_path: Path | None, epochs: float, learning_rate: float | None, batch_size: int,
                  seed: int, max_length: int, max_steps: int, gradient_checkpointing: bool, overwrite: bool,
                  as_json: bool) -> None:
    """Train a METHOD adapter on --data and write it, with a model card, to --out.

    Any other --option is an option of the method, in its own spelling with - or _
    (--r 8 --lora-alpha 16 --target-modules query,value; --num-virtual-tokens 20;
    --preset double_seq_bn --reduction-factor 8). A misspelled one is an error that lists the
    method's options. Unset options get the method's defaults (LoRA: r=8, alpha 16, the
    architecture's usual target modules). Built on transformers' Trainer: progress bars on stderr,
    the evaluation at the end; the folder is ready for `adapterhub push`.
    """
    from ..train import Recipe, TrainRequest, read_rows, train_adapter

    options: dict[str, Any] = {}
    if config_path is not None:
        try:
            options = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{config_path}: not a JSON object of method options ({exc})") from None
        if not isinstance(options, dict):
            raise UsageError(f"{config_path}: expected a JSON object of method options")
    options.update(method_options(list(ctx.args)))
    recipe = Recipe(method=method, options=options, epochs=epochs, learning_rate=learning_rate,
                    batch_size=batch_size, seed=seed, max_length=max_length, max_steps=max_steps)
    request = TrainRequest(
        base=base, task=task, out=out, recipe=recipe, train=read_rows(data_path),
        eval=read_rows(eval_path) if eval_path else None, progress=not as_json, overwrite=overwrite,
        gradient_checkpointing=gradient_checkpointing,
        command=_command_line(base, method, task, data_path, eval_path, out, recipe),
    )
    if not as_json:
        info(f"training {method} on {len(request.train.rows)} rows of {data_path.name} ({task}) ...")
    result = train_adapter(request)
    if as_json:
        emit_json(result.as_json())
        return
    share = 100 * result.trainable_parameters / result.total_parameters if result.total_parameters else 0.0
    info(f"trained {result.trainable_parameters:,} of {result.total_parameters:,} parameters ({share:.3f}%) "
         f"in {result.train_seconds:.1f} s; peak memory {result.peak_rss_mb:.0f} MB")
    for key, value in sorted(result.metrics.items()):
        info(f"  {key}: {value:.4f}")
    info(f"wrote {result.out} ({', '.join(result.files)}); publish it with: adapterhub push {result.out} --repo NS/NAME "
         "--version 0.1.0")


def _command_line(base: str, method: str, task: str, data: Path, evaluation: Path | None, out: Path,
                  recipe: Any) -> str:
    """The command that repeats this run, for the model card (file names as given)."""
    words = ["adapterhub", "train", "--base", base, "--method", method, "--task", task, "--data", str(data)]
    if evaluation is not None:
        words += ["--eval", str(evaluation)]
    words += ["--out", str(out), "--epochs", f"{recipe.epochs:g}", "--batch-size", str(recipe.batch_size),
              "--seed", str(recipe.seed), "--max-length", str(recipe.max_length)]
    if recipe.learning_rate is not None:
        words += ["--lr", f"{recipe.learning_rate:g}"]
    if recipe.max_steps > 0:
        words += ["--max-steps", str(recipe.max_steps)]
    for key, value in recipe.options.items():
        words += [f"--{key.replace('_', '-')}", value if isinstance(value, str) else json.dumps(value)]
    return shlex.join(words)


def register(cli: click.Group) -> None:
    cli.add_command(train_command)
