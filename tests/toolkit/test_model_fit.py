"""When an adapter does not fit, the hint names the real cause: the model class (a task head on one
side only) or the label count, not "a different base model"."""

from __future__ import annotations

import pytest
from support.fixtures import BASE

from adapterhub import AdapterModel
from adapterhub.errors import IncompatibleBaseModelError
from adapterhub.plugin import AdapterFiles
from adapterhub.toolkit.model_fit import label_count, task_model_class

TINY_BERT = str(BASE / "tiny-bert")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from transformers import BertForSequenceClassification, BertModel

    folder = tmp_path_factory.mktemp("fit")
    am = AdapterModel(BertForSequenceClassification.from_pretrained(TINY_BERT, num_labels=3))
    am.add_adapter("cls", "lora", r=2, target_modules=["query"], modules_to_save=["classifier"], task_type="SEQ_CLS")
    am.save_adapter(folder / "cls", "cls")
    am = AdapterModel(BertModel.from_pretrained(TINY_BERT))
    am.add_adapter("bare", "lora", r=2, target_modules=["query"])
    am.save_adapter(folder / "bare", "bare")
    return folder


def _hint(model, folder):
    with pytest.raises(IncompatibleBaseModelError) as err:
        AdapterModel(model).load_adapter(folder)
    assert "different base model" not in str(err.value)
    return err.value.hint


def test_a_classifier_adapter_on_the_bare_model_names_the_class_and_labels(saved):
    from transformers import BertModel

    hint = _hint(BertModel.from_pretrained(TINY_BERT), saved / "cls")
    assert "task head" in hint and "SEQ_CLS" in hint
    assert "AutoModelForSequenceClassification.from_pretrained(BASE, num_labels=3)" in hint


def test_another_label_count_is_named(saved):
    from transformers import BertForSequenceClassification

    hint = _hint(BertForSequenceClassification.from_pretrained(TINY_BERT, num_labels=2), saved / "cls")
    assert "'classifier' has 3 outputs (labels) and the model's has 2" in hint and "num_labels=3" in hint


def test_a_bare_model_adapter_on_a_classifier_is_named(saved):
    from transformers import BertForSequenceClassification

    hint = _hint(BertForSequenceClassification.from_pretrained(TINY_BERT, num_labels=2), saved / "bare")
    assert "bare base model" in hint and "'bert'" in hint and "AutoModel.from_pretrained" in hint


def test_an_adapter_for_another_architecture_keeps_the_base_model_hint(saved):
    from transformers import GPT2Model

    from support.fixtures import BASE as base

    with pytest.raises(IncompatibleBaseModelError) as err:
        AdapterModel(GPT2Model.from_pretrained(str(base / "tiny-gpt2"))).load_adapter(saved / "bare")
    assert "different base model" in str(err.value)


def test_label_count_and_task_classes():
    import torch

    files = AdapterFiles("lora", {"modules_to_save": ["classifier"]},
                         {"bert.x.lora_A.weight": torch.zeros(2, 4), "classifier.weight": torch.zeros(5, 4)})
    assert label_count(files) == 5
    assert label_count(AdapterFiles("lora", {}, {"classifier.weight": torch.zeros(5, 4)})) is None
    assert task_model_class("SEQ_CLS") == "AutoModelForSequenceClassification"
    assert task_model_class("seq_cls") == "AutoModelForSequenceClassification"
    assert task_model_class(None) is None and task_model_class("UNKNOWN") is None
