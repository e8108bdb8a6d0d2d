"""``adapterhub demo``: the whole loop on a real model, offline, in one command."""

from __future__ import annotations

import click

from .output import emit_json, info, json_option


@click.command("demo")
@click.option(
    "--text",
    "texts",
    multiple=True,
    metavar="TEXT",
    help="Your own sentence to classify (repeat for more).",
)
@click.option("--keep", is_flag=True, help="Keep the temporary hub, store, lock file and merged model.")
@json_option
def demo_command(texts: tuple[str, ...], keep: bool, as_json: bool) -> None:
    """Publish, install, run, compose, merge and reload real adapters on all-MiniLM-L6-v2.

    Starts a local Hub in a temporary folder and publishes the bundled demo adapters to it
    (sentiment: LoRA, emotion: bottleneck) as the exact releases the bundled registry index pins;
    installs them by name through that index into a temporary store with a lock file; loads both
    onto one all-MiniLM-L6-v2, classifies a few sentences with each (set_adapter) and with both
    from one forward pass (Parallel); merges the LoRA into the base weights, exports and reloads
    the merged model with plain transformers; then stops the Hub and removes everything (unless
    --keep). Needs no internet. The narration goes to stdout (to stderr with --json, whose report
    is then all of stdout); errors go to stderr.
    """
    from ..demo.run import run_demo

    report = run_demo(texts=list(texts), keep=keep, say=info if as_json else click.echo)
    if as_json:
        emit_json(report)


def register(cli: click.Group) -> None:
    cli.add_command(demo_command)
