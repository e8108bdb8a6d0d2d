"""The ``adapterhub demo`` job: the whole adapterhub loop on all-MiniLM-L6-v2, offline.

1. start a local Hub (``adapterhub hub serve``) on 127.0.0.1 with a temporary root;
2. publish the bundled demo adapters to it (``adapterhub push``, run in this process), registering each
   version in an index written to the temporary folder, and check that the published files are the
   ones the bundled registry index lists;
3. install them by registry name through that index into a temporary store, writing a lock file
   (``adapterhub install NAME... --lock FILE``, run in this process);
4. load each installed adapter onto all-MiniLM-L6-v2 with :class:`adapterhub.AdapterModel` (the
   LoRA with its PEFT ``modules_to_save`` classifier, the bottleneck with its AdapterHub head) and
   print predictions for the example sentences and the user's own;
5. merge the LoRA into the base weights, export a plain transformers checkpoint, reload it with
   transformers alone and show that it predicts the same;
6. stop the Hub and remove the temporary folder (unless ``keep``).

Why an index in the temporary folder and not the bundled one: the Hub's commit ids hash the commit
date and the manifest records its creation time, so a fresh Hub gives a release a new commit id
every time. The bundled ``registry_index`` entries record the demo releases (repo, tag, every
file's sha256); the demo checks that the adapter files it publishes hash to exactly those values,
then installs through the index its own push wrote, whose revisions exist on its Hub.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .tasks import (
    DEMO_ORG,
    DEMO_TASKS,
    DEMO_VERSION,
    SENTIMENT,
    DemoTask,
    adapter_dir,
    base_model_path,
    metrics_path,
)

Say = Callable[[str], None]

#: Files whose content depends on the moment of publishing, not on the adapter.
_TIME_DEPENDENT_FILES = frozenset({"adapterhub.json"})


def _quiet(_message: str) -> None:
    pass


def _prepare_environment(workspace: Path) -> None:
    """Keep the demo off the network and off the user's own caches.

    huggingface_hub reads these when it is first imported, which happens after this point (the
    CLI imports it lazily). The demo only talks to its own Hub on 127.0.0.1, so a user's
    ``HF_HUB_OFFLINE=1`` is lifted for this process: it would forbid exactly that.
    """
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["HF_HOME"] = str(workspace / "hf-home")
    os.environ["HF_HUB_CACHE"] = str(workspace / "hf-home" / "hub")
    for name in ("HF_HUB_OFFLINE", "ADAPTERHUB_OFFLINE", "HF_ENDPOINT", "ADAPTERHUB_INDEX"):
        os.environ.pop(name, None)


# --- step 2: publish --------------------------------------------------------------------------------


def bundled_entry(task: DemoTask) -> dict[str, Any] | None:
    """The demo adapter's entry in the bundled registry index, if the package ships one."""
    from importlib import resources

    path = resources.files("adapterhub.registry_index").joinpath(*f"{task.name}.json".split("/"))
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def compare_with_bundled(task: DemoTask, files: list[dict[str, Any]]) -> dict[str, Any]:
    """Which published files hash to what the bundled index lists for this version."""
    entry = bundled_entry(task)
    listed = {}
    if entry is not None:
        version = entry.get("versions", {}).get(DEMO_VERSION, {})
        listed = {f["path"]: f["sha256"] for f in version.get("files", [])}
    published = {f["path"]: f["sha256"] for f in files}
    checked = sorted(p for p in published if p not in _TIME_DEPENDENT_FILES)
    mismatched = [p for p in checked if listed.get(p) != published[p]]
    return {
        "bundled_entry": entry is not None,
        "checked_files": checked,
        "mismatched_files": mismatched,
        "matches": entry is not None and not mismatched and set(checked) <= set(listed),
    }


# --- the CLI, in-process ----------------------------------------------------------------------------


def adapterhub_cli(args: list[str], say: Say) -> None:
    """Run an ``adapterhub`` command in this process, exactly as the CLI would (errors propagate)."""
    from ..cli import cli

    shown = [("***" if prev == "--token" else a) for prev, a in zip(["", *args], args)]
    say(f"  $ adapterhub {shlex.join(shown)}")
    # Commands print their human summary on stdout; the demo's stdout is for its own report.
    with contextlib.redirect_stdout(sys.stderr):
        cli.main(args=args, prog_name="adapterhub", standalone_mode=False)


def publish_with_cli(endpoint: str, token: str, index_dir: Path, workspace: Path, say: Say) -> list[dict[str, Any]]:
    """``adapterhub push`` each demo adapter; return what was published (from the entry files)."""
    metrics = json.loads(metrics_path().read_text(encoding="utf-8"))["tasks"]
    published = []
    for task in DEMO_TASKS:
        entry_file = workspace / "entries" / f"{task.directory}-{DEMO_VERSION}.entry.json"
        adapterhub_cli(
            ["push", str(adapter_dir(task)), "--repo", task.repo_id, "--version", DEMO_VERSION,
             "--name", task.name, "--task", task.task, "--license", task.license,
             "--description", task.description, "--metric", f"accuracy={metrics[task.key]['accuracy']}",
             "--base-model", str(base_model_path()), "--endpoint", endpoint, "--token", token,
             "--index-dir", str(index_dir), "--entry-out", str(entry_file),
             "--no-check"],  # step 4 loads every adapter onto MiniLM anyway
            say,
        )
        version = json.loads(entry_file.read_text(encoding="utf-8"))["versions"][DEMO_VERSION]
        bundled = compare_with_bundled(task, version["files"])
        say(
            f"  -> {task.name} {DEMO_VERSION} ({task.method}) is {task.repo_id}@{version['source']['tag']}, "
            f"commit {version['source']['revision'][:12]}, {len(version['files'])} files"
            + ("; its adapter files hash to what the bundled index lists" if bundled["matches"] else
               "; WARNING: they differ from the bundled index" if bundled["bundled_entry"] else "")
        )
        published.append(
            {"name": task.name, "repo_id": task.repo_id, "tag": version["source"]["tag"],
             "commit": version["source"]["revision"], "method": task.method, "files": version["files"],
             "bundled_index": bundled}
        )
    return published


def install_with_cli(endpoint: str, index_dir: Path, lock_file: Path, say: Say) -> list[dict[str, Any]]:
    """``adapterhub install NAME... --lock FILE``; return the lock file's entries."""
    from ..client.lockfile import read_lock

    adapterhub_cli(
        ["install", *[t.name for t in DEMO_TASKS], "--lock", str(lock_file),
         "--index", str(index_dir), "--endpoint", endpoint],
        say,
    )
    return read_lock(lock_file)


# --- steps 4 and 5: run, merge, export, reload ---------------------------------------------------------


def _tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model_path())


def _classify(model: Any, tokenizer: Any, texts: list[str], labels: tuple[str, ...]) -> list[dict[str, Any]]:
    import torch

    enc = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc)["logits"]
    probs = logits.softmax(-1)
    out = []
    for text, row, p in zip(texts, logits.tolist(), probs.tolist()):
        best = max(range(len(row)), key=row.__getitem__)
        out.append({"text": text, "label": labels[best], "score": round(p[best], 4), "logits": row})
    return out


def _print_predictions(say: Say, title: str, rows: list[dict[str, Any]]) -> None:
    say(f"  {title}")
    width = max(len(r["text"]) for r in rows)
    for r in rows:
        say(f"    {r['text']:<{width}}  ->  {r['label']:<8} ({r['score']:.2f})")


def _load_base(task: DemoTask) -> Any:
    """A fresh all-MiniLM-L6-v2 shaped for ``task``'s head.

    The LoRA carries a PEFT ``modules_to_save`` copy of BertForSequenceClassification's
    ``classifier``; the bottleneck carries an AdapterHub head that reads the encoder's output.
    """
    from transformers import AutoModel, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "classifier newly initialised": the LoRA brings its own
    if task.method == "lora":
        base = AutoModelForSequenceClassification.from_pretrained(
            base_model_path(), num_labels=len(task.labels),
            id2label=dict(enumerate(task.labels)), label2id={n: i for i, n in enumerate(task.labels)},
        )
    else:
        base = AutoModel.from_pretrained(base_model_path())
    return base.eval()


def run_adapters(installed: dict[str, Path], texts: list[str], say: Say) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each installed adapter loaded by AdapterModel onto MiniLM; predictions for every task."""
    from ..runtime.model import AdapterModel

    tokenizer = _tokenizer()
    models: dict[str, Any] = {}
    results: dict[str, Any] = {}
    for task in DEMO_TASKS:
        model = AdapterModel(_load_base(task))
        model.load_adapter(installed[task.key], name=task.key)
        model.set_adapter(task.key)
        model.eval()  # inference: no dropout anywhere, adapter modules included
        info = model.adapters[task.key]
        say(f"  {type(model.model).__name__} + load_adapter({task.name!r}): {info.method} "
            f"({info.format} format, {info.params:,} parameters, head included)")
        sentences = [text for text, _ in task.examples] + list(texts)
        rows = _classify(model, tokenizer, sentences, task.labels)
        for row, (_, expected) in zip(rows, task.examples):
            row["expected"] = expected
        _print_predictions(say, f"{task.task} ({', '.join(task.labels)})", rows)
        models[task.key] = model
        results[task.key] = rows
    return models, results


def merge_export_reload(model: Any, out_dir: Path, texts: list[str], say: Say) -> dict[str, Any]:
    """Fold the sentiment LoRA into MiniLM, save a plain checkpoint, reload it with transformers alone."""
    from transformers import AutoModelForSequenceClassification

    merged = model.merge_and_unload()
    say(f"  merge_and_unload(): the LoRA is folded into the weights; {type(merged).__name__} has no adapter modules left")
    merged.save_pretrained(out_dir)
    _tokenizer().save_pretrained(out_dir)
    size = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
    say(f"  save_pretrained({out_dir}): {size / 1e6:.1f} MB")
    reloaded = AutoModelForSequenceClassification.from_pretrained(out_dir)
    reloaded.eval()
    sentences = [text for text, _ in SENTIMENT.examples] + list(texts)
    from transformers import AutoTokenizer

    rows = _classify(reloaded, AutoTokenizer.from_pretrained(out_dir), sentences, SENTIMENT.labels)
    _print_predictions(say, "AutoModelForSequenceClassification.from_pretrained(merged): sentiment", rows)
    return {"path": str(out_dir), "bytes": size, "predictions": rows}


# --- the job --------------------------------------------------------------------------------------------


def run_demo(texts: list[str] | None = None, *, keep: bool = False, say: Say | None = None) -> dict[str, Any]:
    """Run the whole demo; return a JSON-able report. Leaves nothing running, and nothing on disk
    unless ``keep``."""
    say = say or _quiet
    texts = [t for t in (texts or []) if t.strip()]
    started = time.perf_counter()
    workspace = Path(tempfile.mkdtemp(prefix="adapterhub-demo-"))
    saved_env = dict(os.environ)
    report: dict[str, Any] = {"workspace": str(workspace), "kept": keep}
    hub = None
    try:
        _prepare_environment(workspace)
        os.environ["ADAPTERHUB_HOME"] = str(workspace / "store")
        from ..hub.testing import RunningHub

        say(f"[1/6] Starting a local Hub on 127.0.0.1 (root {workspace / 'hub'})")
        token = secrets.token_urlsafe(24)
        hub = RunningHub(workspace / "hub", {DEMO_ORG: token}).start()
        say(f"  serving on {hub.url} (user {DEMO_ORG!r}, token kept in memory)")
        report["hub"] = {"url": hub.url}

        say(f"[2/6] Publishing the demo adapters to it, registering them in {workspace / 'index'}")
        index_dir = workspace / "index"
        report["published"] = publish_with_cli(hub.url, token, index_dir, workspace, say)

        say("[3/6] Installing them by name, verified, into a temporary store, with a lock file")
        lock_file = workspace / "adapterhub.lock"
        lock = install_with_cli(hub.url, index_dir, lock_file, say)
        from ..client import Installer, get_settings

        settings = get_settings(endpoint=hub.url, index=str(index_dir))
        installed = {}
        for task in DEMO_TASKS:
            # Resolves to the copy just installed; nothing is downloaded again.
            path = Installer(settings).execute(Installer(settings).plan([task.name]))[0].path
            installed[task.key] = path
        report["lock_file"] = str(lock_file)
        report["installed"] = [
            {"name": e["name"], "version": e.get("version"), "method": e["method"]["name"],
             "revision": e["source"].get("revision"), "files": len(e["files"]), "path": str(installed[t.key])}
            for e in lock for t in DEMO_TASKS if t.name == e["name"]
        ]
        for item in report["installed"]:
            say(f"  {item['name']} {item['version']} [{item['method']}] pinned at {item['revision'][:12]} in {lock_file.name}")

        say("[4/6] Loading the installed adapters onto all-MiniLM-L6-v2 with AdapterModel")
        models, predictions = run_adapters(installed, texts, say)
        report["predictions"] = predictions

        say("[5/6] Merging the sentiment LoRA for deployment and reloading the merged model")
        report["merged"] = merge_export_reload(models[SENTIMENT.key], workspace / "merged-sentiment", texts, say)
        before, after = predictions[SENTIMENT.key], report["merged"]["predictions"]
        same = [a["label"] for a in before] == [b["label"] for b in after]
        drift = max(abs(x - y) for a, b in zip(before, after) for x, y in zip(a["logits"], b["logits"]))
        say("  the merged model predicts " + ("the same labels" if same else "DIFFERENT labels (a bug)")
            + f" as the model with the adapter (largest logit difference {drift:.1e})")
        report["merged"]["same_labels"] = same
        report["merged"]["max_logit_difference"] = drift
    finally:
        if hub is not None:
            hub.close()
            say("[6/6] Stopped the Hub" + (f"; kept everything in {workspace}" if keep else "; removed the temporary folder"))
            if keep:
                say(f"  serve it again: adapterhub hub serve --root {workspace / 'hub'}")
                say(f"  then: ADAPTERHUB_HOME={workspace / 'store'} adapterhub list  "
                    f"(lock file: {workspace / 'adapterhub.lock'}, merged model: {workspace / 'merged-sentiment'})")
        os.environ.clear()
        os.environ.update(saved_env)
        if not keep:
            shutil.rmtree(workspace, ignore_errors=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    say(f"Done in {report['seconds']:.0f} s.")
    return report
