"""Publishing the bundled demo adapters to a Hub, reproducibly, exactly as the bundled index records them.

One code path serves three callers: ``adapterhub demo`` (publishes to its temporary Hub),
``adapterhub hub serve --demo`` (seeds a running Hub) and ``examples/register_demo_adapters.py``
(regenerates the bundled ``registry_index`` entries). Each makes the request ``adapterhub push`` makes
(through :func:`adapterhub.publish.push_directory`, showing the equivalent command) with the same
options and a fixed ``SOURCE_DATE_EPOCH``, so every push of a demo release produces byte-identical
files, and, since the Hub's commit ids hash a commit's content (parent, message, author, files)
and a repo's first commit names the repo, the same commit id on every fresh Hub. The bundled
entries pin that commit; :func:`check_against_bundled` proves a Hub really holds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import IntegrityError
from .tasks import DEMO_RELEASE_EPOCH, DEMO_TASKS, DEMO_VERSION, DemoTask, adapter_dir, base_model_path, metrics_path

Say = Callable[[str], None]
SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"
#: Quoted commands longer than this are wrapped (shell line continuations).
COMMAND_WIDTH = 100


def shown_command(args: list[str], env: dict[str, str] | None = None, *, width: int | None = None,
                  indent: str = "      ") -> str:
    """The shell line of an ``adapterhub`` command, with ``--token`` values masked.

    With ``width``, longer commands are wrapped between options with shell line continuations
    (`` \\``), so the text still pastes into a shell as one command.
    """
    shown = [("***" if prev == "--token" else a) for prev, a in zip(["", *args], args)]
    words = [f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()] + ["adapterhub"] + [shlex.quote(a) for a in shown]
    if width is None:
        return " ".join(words)
    units: list[str] = []  # an option and its value stay on one line
    for word in words:
        if units and not word.startswith("--") and units[-1].startswith("--") and " " not in units[-1]:
            units[-1] += " " + word
        elif units and not word.startswith("--") and not units[-1].startswith("--"):
            units[-1] += " " + word
        else:
            units.append(word)
    lines = [units[0]]
    for unit in units[1:]:
        if len(lines[-1]) + 1 + len(unit) + 2 > width:
            lines.append(indent + unit)
        else:
            lines[-1] += " " + unit
    return " \\\n".join(lines)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def push_request(task: DemoTask, endpoint: str, token: str, entry_file: Path) -> tuple[list[str], dict[str, Any]]:
    """The ``adapterhub push`` arguments of a demo release (the bundled entry was made with these) and
    the same request as :func:`adapterhub.publish.push_directory` keywords."""
    from ..publish import parse_metrics

    metrics = json.loads(metrics_path().read_text(encoding="utf-8"))["tasks"]
    accuracy = metrics[task.key]["accuracy"]
    args = [
        "push", str(adapter_dir(task)), "--repo", task.repo_id, "--version", DEMO_VERSION,
        "--name", task.name, "--task", task.task, "--license", task.license,
        "--description", task.description, "--metric", f"accuracy={accuracy}",
        "--base-model", str(base_model_path()), "--endpoint", endpoint, "--token", token,
        "--entry-out", str(entry_file),
    ]
    kwargs = dict(repo_id=task.repo_id, version=DEMO_VERSION, name=task.name, task=task.task,
                  license=task.license, description=task.description, metrics=parse_metrics([f"accuracy={accuracy}"]),
                  base_model=str(base_model_path()), endpoint=endpoint, token=token, entry_out=entry_file)
    return args, kwargs


def bundled_entry(task: DemoTask) -> dict[str, Any] | None:
    """The demo adapter's entry in the bundled registry index, if the package ships one."""
    path = resources.files("adapterhub.registry_index").joinpath(*f"{task.name}.json".split("/"))
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def compare_with_bundled(task: DemoTask, revision: str, files: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether a published release is the one the bundled index pins: same commit, same files."""
    entry = bundled_entry(task)
    version = (entry or {}).get("versions", {}).get(DEMO_VERSION, {})
    listed = {f["path"]: f["sha256"] for f in version.get("files", [])}
    published = {f["path"]: f["sha256"] for f in files}
    mismatched = sorted(p for p in set(listed) | set(published) if listed.get(p) != published.get(p))
    pinned = (version.get("source") or {}).get("revision")
    return {
        "bundled_entry": entry is not None,
        "bundled_revision": pinned,
        "same_revision": pinned == revision,
        "checked_files": sorted(published),
        "mismatched_files": mismatched,
        "matches": entry is not None and pinned == revision and not mismatched,
    }


def publish_demo_adapters(
    endpoint: str, token: str, workdir: Path, say: Say, *, index_dir: Path | None = None, quiet: bool = False
) -> list[dict[str, Any]]:
    """``adapterhub push`` each demo adapter (a no-op for a release the Hub already holds).

    ``index_dir`` also registers each release there (``--index-dir``). ``quiet``: only one line
    per adapter, not the push commands and their output. Returns, per adapter, what was published
    and how it compares with the bundled index.
    """
    from ..publish import push_directory

    published = []
    for task in DEMO_TASKS:
        entry_file = Path(workdir) / "entries" / f"{task.directory}-{DEMO_VERSION}.entry.json"
        args, kwargs = push_request(task, endpoint, token, entry_file)
        if index_dir is not None:
            args += ["--index-dir", str(index_dir)]
            kwargs["index_dir"] = index_dir
        env = {SOURCE_DATE_EPOCH: str(DEMO_RELEASE_EPOCH)}
        if not quiet:
            say(f"  $ {shown_command(args, env, width=COMMAND_WIDTH)}")
        with _environment(env):
            result = push_directory(adapter_dir(task), **kwargs)
        version = json.loads(entry_file.read_text(encoding="utf-8"))["versions"][DEMO_VERSION]
        revision = version["source"]["revision"]
        bundled = compare_with_bundled(task, revision, version["files"])
        if not quiet:
            say(
                f"  -> {task.name} {DEMO_VERSION} ({task.method}, loads onto {result.checked_as}) is "
                f"{task.repo_id}@{version['source']['tag']}, commit {revision[:12]}, {len(version['files'])} files"
                + ("; exactly the release the bundled index pins" if bundled["matches"] else "")
            )
        published.append(
            {"name": task.name, "repo_id": task.repo_id, "tag": version["source"]["tag"], "commit": revision,
             "method": task.method, "files": version["files"], "bundled_index": bundled}
        )
    return published


def check_against_bundled(published: list[dict[str, Any]]) -> None:
    """Raise unless every published demo release is the commit and the files the bundled index pins."""
    problems = []
    tasks = {task.name: task for task in DEMO_TASKS}
    for item in published:
        bundled = compare_with_bundled(tasks[item["name"]], item["commit"], item["files"])  # read afresh
        if not bundled["bundled_entry"]:
            problems.append(f"{item['name']}: no entry in the bundled registry index")
            continue
        if not bundled["same_revision"]:
            problems.append(
                f"{item['name']}: the Hub has {item['repo_id']}@{item['tag']} at commit {item['commit']}, "
                f"the bundled index pins {bundled['bundled_revision']}"
            )
        for path in bundled["mismatched_files"]:
            problems.append(f"{item['name']}: {path}: sha256 differs from the bundled index")
    if problems:
        raise IntegrityError(
            "the demo releases on this Hub are not the ones the bundled registry index pins, so "
            "`adapterhub install` by name would fail against it",
            problems=problems,
            hint="use a fresh --root (an older release, or a demo repo someone else created, may be "
            "there), or, after retraining the adapters, regenerate the entries: "
            "python examples/register_demo_adapters.py",
        )


def seed_hub(endpoint: str, token: str, say: Say) -> list[dict[str, Any]]:
    """Publish the demo adapters to the Hub at ``endpoint`` (idempotent) and prove they are the
    releases the bundled index pins, so ``adapterhub install NAME`` works against that Hub."""
    import tempfile

    # The Hub is local: a user's offline switch would forbid exactly these requests. This runs
    # before huggingface_hub is imported in this process (it reads the environment on import).
    os.environ.pop("HF_HUB_OFFLINE", None)
    for name in ("HF_HUB_DISABLE_TELEMETRY", "HF_HUB_DISABLE_XET", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(name, "1")
    with tempfile.TemporaryDirectory(prefix="adapterhub-demo-seed-") as tmp:
        published = publish_demo_adapters(endpoint, token, Path(tmp), say, quiet=True)
    check_against_bundled(published)
    return published
