"""The load check of a push: the adapter loads onto its base model, in the class its task needs, and
a forward pass runs.

A PEFT adapter's keys are relative to the class it was trained on (``task_type`` ``SEQ_CLS``: a
sequence-classification model, whose saved classifier fixes the label count). So the base is loaded
as, in this order: the class the adapter's ``task_type`` names, with the adapter's label count; the
class ``--task`` implies; the class the base model was saved as. The first that takes the adapter
and runs passes the check; when none does, the error of the first (the adapter's own task) is
reported, with every class tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PublishError
from ..plugin.registry import detect_method
from ..toolkit.model_fit import label_count, needs_labels, task_model_class

#: Hub task names (``--task``) that imply a PEFT task type, hence a model class.
TASK_TYPE_BY_HUB_TASK = {
    "text-classification": "SEQ_CLS",
    "sentiment-analysis": "SEQ_CLS",
    "token-classification": "TOKEN_CLS",
    "ner": "TOKEN_CLS",
    "question-answering": "QUESTION_ANS",
    "text-generation": "CAUSAL_LM",
    "text2text-generation": "SEQ_2_SEQ_LM",
    "feature-extraction": "FEATURE_EXTRACTION",
}


@dataclass(frozen=True)
class LoadedAs:
    """The class the load check loaded the base model in: ``model_class`` is what transformers built
    (``BertForSequenceClassification``), ``auto_class`` the Auto class that builds it again."""

    model_class: str
    auto_class: str
    num_labels: int | None

    def __str__(self) -> str:
        return self.model_class + (f"(num_labels={self.num_labels})" if self.num_labels else "")


@dataclass(frozen=True)
class BaseClass:
    """One way to load the base model for the check."""

    auto_class: str | None  # a transformers Auto class; None: the class the base was saved as
    num_labels: int | None
    reason: str  # why this class: "the adapter's task_type SEQ_CLS", "--task ...", ...

    def describe(self) -> str:
        name = self.auto_class or "the class the base model was saved as"
        return name + (f"(num_labels={self.num_labels})" if self.num_labels else "") + f" ({self.reason})"


def base_classes(config: dict[str, Any], task: str | None, labels: int | None) -> list[BaseClass]:
    """The classes to try, most specific first (see the module docstring)."""
    found: list[BaseClass] = []
    task_type = config.get("task_type")
    for kind, reason in ((task_type, f"the adapter's task_type {task_type}"),
                         (TASK_TYPE_BY_HUB_TASK.get(str(task or "")), f"--task {task}")):
        auto = task_model_class(kind)
        if auto:
            found.append(BaseClass(auto, labels if needs_labels(auto) else None, reason))
    found.append(BaseClass(None, None, "its config.json architectures"))
    unique: list[BaseClass] = []
    for item in found:
        if all((item.auto_class, item.num_labels) != (u.auto_class, u.num_labels) for u in unique):
            unique.append(item)
    return unique


def load_base_model(base_path: Path, choice: BaseClass | None = None) -> Any:
    """The base model as ``choice`` says (default: the class it was saved as, ``architectures[0]``)."""
    import transformers
    from transformers.utils import logging as hf_logging

    if choice is not None and choice.auto_class:
        cls = getattr(transformers, choice.auto_class)
        kwargs = {"num_labels": choice.num_labels} if choice.num_labels else {}
    else:
        config = transformers.AutoConfig.from_pretrained(str(base_path))
        architectures = getattr(config, "architectures", None) or []
        cls = (getattr(transformers, architectures[0], None) if architectures else None) or transformers.AutoModel
        kwargs = {}
    # a task head absent from the base checkpoint is expected (the adapter brings its own): no load report
    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return cls.from_pretrained(str(base_path), **kwargs)
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def dummy_inputs(model: Any) -> dict[str, Any]:
    """A small batch of token ids valid for ``model``'s vocabulary (padding in row 1)."""
    import torch

    config = getattr(model, "config", None)
    vocab = int(getattr(config, "vocab_size", 0) or 100)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, max(2, min(vocab, 1000)), (2, 8), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def _load_and_run(adapter_dir: Path, model: Any) -> None:
    import torch

    from ..runtime.model import AdapterModel

    am = AdapterModel(model)
    name = am.load_adapter(str(adapter_dir), name="publish_check")
    am.set_adapter(name)
    am.eval()
    with torch.no_grad():
        output = am(**dummy_inputs(am.model))
    tensors = [v for v in (output.values() if hasattr(output, "values") else [output]) if torch.is_tensor(v)]
    if any(not torch.isfinite(t).all() for t in tensors):
        raise PublishError("the forward pass with the adapter produced NaN or inf")


def check_loads_on_base(adapter_dir: Path, base_path: Path, *, task: str | None = None) -> LoadedAs:
    """Load the adapter onto the base model (see the module docstring) and run one forward pass.

    Returns the class it loaded onto (``BertForSequenceClassification(num_labels=2)``). When it
    loads onto none, raises :class:`PublishError`: the first class's error (its hint too), then the
    other classes tried.
    """
    from ..errors import AdapterHubError

    adapter_dir = Path(adapter_dir)
    files = detect_method(adapter_dir).read(adapter_dir)
    choices = base_classes(files.config, task, label_count(files))
    errors: list[str] = []
    hint = None
    for choice in choices:
        model = load_base_model(base_path, choice)
        try:
            _load_and_run(adapter_dir, model)
        except Exception as exc:  # noqa: BLE001 - the next class may fit; every error is reported
            if isinstance(exc, AdapterHubError):
                errors.append(f"as {choice.describe()}: {exc.message}")
                hint = hint or exc.hint
            else:
                errors.append(f"as {choice.describe()}: {type(exc).__name__}: {exc}")
            continue
        labels = getattr(model.config, "num_labels", None) if choice.num_labels else None
        return LoadedAs(type(model).__name__, choice.auto_class or "AutoModel", labels)
    raise PublishError("; ".join(errors), hint=hint)
