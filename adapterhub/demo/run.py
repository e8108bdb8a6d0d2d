"""The ``adapterhub demo`` job: the whole adapterhub loop on all-MiniLM-L6-v2, offline.

1. start a local Hub (``adapterhub hub serve``) on 127.0.0.1 with a temporary root;
2. publish the bundled demo adapters to it (``SOURCE_DATE_EPOCH=... adapterhub push``, run in this
   process) and check that each release is exactly the commit, with exactly the files, that the
   bundled registry index pins;
3. install them by registry name through the bundled index, with ``HF_ENDPOINT`` pointing at the
   local Hub, into a temporary store, writing a lock file (``adapterhub install NAME... --lock FILE``);
4. load BOTH onto ONE all-MiniLM-L6-v2 (``BertForSequenceClassification``) with
   :class:`adapterhub.AdapterModel`: the LoRA with its PEFT ``modules_to_save`` classifier, the
   bottleneck with its AdapterHub head; show each task with ``set_adapter``, then both tasks from a
   single forward pass with ``Parallel("sentiment", "emotion")``;
5. drop the bottleneck, merge the LoRA into the base weights, export a plain transformers
   checkpoint, reload it with transformers alone and show that it predicts the same;
6. stop the Hub and remove the temporary folder (unless ``keep``).

Pushes are reproducible (fixed ``SOURCE_DATE_EPOCH``, same message and author) and the Hub's commit
ids hash a commit's content only, so a fresh Hub gets the very revisions the bundled index pins and
installing by name needs no index of the demo's own (:mod:`adapterhub.demo.publish`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .publish import COMMAND_WIDTH, _environment, check_against_bundled, publish_demo_adapters, shown_command
from .tasks import DEMO_ORG, DEMO_TASKS, EMOTION, SENTIMENT, DemoTask, base_model_path

if TYPE_CHECKING:  # pragma: no cover
    from ..client.models import LockEntry

Say = Callable[[str], None]

#: One line each for what the demo shows and a newcomer may not know.
FORMATS = {
    "peft": "PEFT format: adapter_config.json + adapter_model.safetensors, as PEFT's save_pretrained writes "
            "them (PEFT loads it too)",
    "adapters": "AdapterHub format: the layout of the `adapters` library (AdapterHub), its bottleneck "
                "adapters and prediction heads (head_config.json)",
}
PARALLEL = ("Parallel: every child adapter runs on its own copy of the batch inside one forward pass, "
            "one output per child")
NEXT_STEPS = (
    ("adapterhub demo --text 'Your own sentence'", "classify your own sentences"),
    ("adapterhub hub serve --root ./hub --port 8765 --demo", "a Hub holding the demo adapters, until Ctrl-C"),
    ("HF_ENDPOINT=http://127.0.0.1:8765 adapterhub install sentiment/minilm-vader",
     "then install from it by name, in another shell"),
    ("adapterhub methods", "every adapter method installed"),
)

#: The Hub runs as ``python -m adapterhub hub serve``, and ``-m`` puts the working directory first on
#: ``sys.path``: run from the folder that holds a clone named ``adapterhub``, the child would import
#: that folder instead of the installed package. PYTHONSAFEPATH (Python 3.11's ``-P``) leaves it out.
SAFE_CHILD_ENV = {"PYTHONSAFEPATH": "1"}


def _quiet(_message: str) -> None:
    pass


def _prepare_environment(workspace: Path) -> None:
    """Keep the demo off the network and off the user's own caches and settings.

    huggingface_hub reads these when it is first imported, which happens after this point (the
    CLI imports it lazily). The demo only talks to its own Hub on 127.0.0.1, so a user's
    ``HF_HUB_OFFLINE=1`` is lifted for this process: it would forbid exactly that. The demo installs
    through the bundled index, so a user's ``ADAPTERHUB_INDEX`` is set aside too.
    """
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_DISABLE_XET"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["HF_HOME"] = str(workspace / "hf-home")
    os.environ["HF_HUB_CACHE"] = str(workspace / "hf-home" / "hub")
    os.environ["ADAPTERHUB_HOME"] = str(workspace / "store")
    for name in ("HF_HUB_OFFLINE", "ADAPTERHUB_OFFLINE", "HF_ENDPOINT", "ADAPTERHUB_INDEX", "HF_TOKEN"):
        os.environ.pop(name, None)


# --- step 3: install ----------------------------------------------------------------------------------


def install_with_cli(endpoint: str, lock_file: Path, say: Say) -> list[LockEntry]:
    """What ``HF_ENDPOINT=URL adapterhub install NAME... --lock FILE`` does (bundled index), through
    the client library; the lock's entries."""
    from ..client import Client
    from ..client.lockfile import read_lock

    names = [t.name for t in DEMO_TASKS]
    env = {"HF_ENDPOINT": endpoint}
    say(f"  $ {shown_command(['install', *names, '--lock', str(lock_file)], env, width=COMMAND_WIDTH)}")
    with _environment(env):
        report = Client().install(names, lock=lock_file)
    for result in report.results:
        say(f"  {result.action} {result.name or result.record.display_name} {result.version or ''}: "
            f"{len(result.record.files)} files, every sha256 checked")
    return read_lock(lock_file)


# --- steps 4 and 5: run, compose, merge, export, reload ------------------------------------------------


def _tokenizer(path: Path | None = None) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path or base_model_path())


def _rows(texts: list[str], logits: Any, labels: tuple[str, ...]) -> list[dict[str, Any]]:
    probs = logits.softmax(-1).tolist()
    out = []
    for text, row, p in zip(texts, logits.tolist(), probs):
        best = max(range(len(row)), key=row.__getitem__)
        out.append({"text": text, "label": labels[best], "score": round(p[best], 4), "logits": row})
    return out


def _forward(model: Any, tokenizer: Any, texts: list[str]) -> Any:
    import torch

    enc = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        return model(**enc)


def _print_predictions(say: Say, title: str, rows: list[dict[str, Any]]) -> None:
    say(f"  {title}")
    width = max(len(r["text"]) for r in rows)
    for r in rows:
        say(f"    {r['text']:<{width}}  ->  {r['label']:<8} ({r['score']:.2f})")


def _load_base() -> Any:
    """all-MiniLM-L6-v2 as a 2-label BertForSequenceClassification.

    Its ``classifier`` is a placeholder: the sentiment LoRA brings its trained copy (PEFT
    ``modules_to_save``), and the emotion bottleneck its own 4-label head, which reads the encoder.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "classifier newly initialised": the LoRA brings its own
    return AutoModelForSequenceClassification.from_pretrained(
        base_model_path(), num_labels=len(SENTIMENT.labels),
        id2label=dict(enumerate(SENTIMENT.labels)), label2id={n: i for i, n in enumerate(SENTIMENT.labels)},
    )


def _task_rows(task: DemoTask, sentences: list[str], texts: list[str]) -> list[int]:
    """Indices into ``sentences`` of the task's own examples, then the user's sentences."""
    own = [t for t, _ in task.examples]
    return [sentences.index(t) for t in own] + [len(sentences) - len(texts) + i for i in range(len(texts))]


def run_adapters(texts: list[str], say: Say) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Both installed adapters on one MiniLM: each task alone, then both from one forward pass."""
    from ..composition import Parallel
    from ..runtime.model import AdapterModel

    tokenizer = _tokenizer()
    model = AdapterModel(_load_base())
    say(f"  AdapterModel({type(model.model).__name__}.from_pretrained('all-MiniLM-L6-v2', num_labels=2))")
    say(f"  {FORMATS['peft']}")
    say(f"  {FORMATS['adapters']}")
    for task in DEMO_TASKS:
        # By registry name: resolves to the verified copy step 3 installed; nothing is downloaded again.
        model.load_adapter(task.name, name=task.key)
        info = model.adapters[task.key]
        head = (f"its {info.head['num_labels']}-label AdapterHub head" if info.head
                else "its trained classifier (PEFT modules_to_save)")
        say(f"  load_adapter({task.name!r}, name={task.key!r}): {info.method}, {info.format} format, "
            f"{info.num_parameters:,} parameters with {head}")

    sentences = [t for task in DEMO_TASKS for t, _ in task.examples] + list(texts)
    single: dict[str, Any] = {}
    predictions: dict[str, Any] = {}
    for task in DEMO_TASKS:
        model.set_adapter(task.key)
        single[task.key] = _forward(model, tokenizer, sentences)["logits"]
        keep = _task_rows(task, sentences, texts)
        rows = _rows([sentences[i] for i in keep], single[task.key][keep], task.labels)
        for row, (_, expected) in zip(rows, task.examples):
            row["expected"] = expected
        _print_predictions(say, f"set_adapter({task.key!r}): {task.task} ({', '.join(task.labels)})", rows)
        predictions[task.key] = rows

    setup = Parallel(*(task.key for task in DEMO_TASKS))
    model.set_adapter(setup)
    outputs = _forward(model, tokenizer, sentences)  # one output per child of the Parallel, in order
    both = {task.key: _rows(sentences, out["logits"], task.labels) for task, out in zip(DEMO_TASKS, outputs)}
    drift = max(float((out["logits"] - single[task.key]).abs().max()) for task, out in zip(DEMO_TASKS, outputs))
    say(f"  set_adapter({setup!r}): both tasks from ONE forward pass")
    say(f"    {PARALLEL}")
    width = max(len(s) for s in sentences)
    for i, sentence in enumerate(sentences):
        cells = "   ".join(f"{both[t.key][i]['label']:<8} ({both[t.key][i]['score']:.2f})" for t in DEMO_TASKS)
        say(f"    {sentence:<{width}}  ->  {cells}")
    say(f"    (the same logits as each adapter alone, largest difference {drift:.1e})")
    parallel = {
        "setup": repr(setup),
        "heads": [getattr(outputs, "heads", [None] * len(DEMO_TASKS))[i] for i in range(len(DEMO_TASKS))],
        "predictions": both,
        "max_logit_difference_from_single": drift,
    }
    return model, predictions, parallel


def merge_export_reload(model: Any, out_dir: Path, texts: list[str], say: Say) -> dict[str, Any]:
    """Fold the sentiment LoRA into MiniLM, save a plain checkpoint, reload it with transformers alone."""
    from transformers import AutoModelForSequenceClassification

    model.set_adapter(SENTIMENT.key)
    model.delete_adapter(EMOTION.key)  # a bottleneck adds modules; it has no weights to fold in
    say(f"  set_adapter({SENTIMENT.key!r}); delete_adapter({EMOTION.key!r}): only the LoRA is left")
    merged = model.merge_and_unload()
    say(f"  merge_and_unload(): the LoRA is folded into the weights; {type(merged).__name__} has no adapter modules left")
    merged.save_pretrained(out_dir)
    _tokenizer().save_pretrained(out_dir)
    size = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
    say(f"  save_pretrained({out_dir}): {size / 1e6:.1f} MB")
    reloaded = AutoModelForSequenceClassification.from_pretrained(out_dir)
    sentences = [t for task in DEMO_TASKS for t, _ in task.examples] + list(texts)
    keep = _task_rows(SENTIMENT, sentences, texts)
    logits = _forward(reloaded, _tokenizer(out_dir), sentences)["logits"]
    rows = _rows([sentences[i] for i in keep], logits[keep], SENTIMENT.labels)
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
        from ..server.testing import RunningHub

        say(f"[1/6] Starting a local Hub on 127.0.0.1 (root {workspace / 'hub'})")
        token = secrets.token_urlsafe(24)
        hub = RunningHub(workspace / "hub", {DEMO_ORG: token}, env=SAFE_CHILD_ENV).start()
        say(f"  serving on {hub.url} (user {DEMO_ORG!r}, token kept in memory)")
        report["hub"] = {"url": hub.url}

        say("[2/6] Publishing the demo adapters to it, reproducibly")
        report["published"] = publish_demo_adapters(hub.url, token, workspace, say)
        check_against_bundled(report["published"])  # else installing by name below could not work
        say("  both are exactly the releases (commit and every file's sha256) the bundled registry index pins")

        say("[3/6] Installing them by name through the bundled index, verified, with a lock file")
        lock_file = workspace / "adapterhub.lock"
        lock = install_with_cli(hub.url, lock_file, say)
        os.environ["HF_ENDPOINT"] = hub.url  # load_adapter(name) below resolves the same way
        report["lock_file"] = str(lock_file)
        report["installed"] = [
            {"name": e.name, "version": e.version, "method": e.method.name,
             "revision": e.source.revision, "files": len(e.files)}
            for e in lock
        ]
        for item in report["installed"]:
            say(f"  {item['name']} {item['version']} [{item['method']}] pinned at {item['revision'][:12]} in {lock_file.name}")

        say("[4/6] Loading both onto ONE all-MiniLM-L6-v2 with AdapterModel")
        model, report["predictions"], report["parallel"] = run_adapters(texts, say)

        say("[5/6] Merging the sentiment LoRA for deployment and reloading the merged model")
        report["merged"] = merge_export_reload(model, workspace / "merged-sentiment", texts, say)
        before, after = report["predictions"][SENTIMENT.key], report["merged"]["predictions"]
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
    say("Next, try:")
    width = max(len(command) for command, _ in NEXT_STEPS)
    for command, what in NEXT_STEPS:
        say(f"  {command:<{width}}  # {what}")
    return report
