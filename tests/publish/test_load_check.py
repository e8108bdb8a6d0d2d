"""The push's load check loads the base in the class the adapter's task needs (a sequence-classification
LoRA onto ``...ForSequenceClassification`` with the adapter's label count), falls back to the class the
base was saved as, and says what is wrong when no class fits; a published config names the base by
its repo id."""

from __future__ import annotations

import json

import pytest
from support.fixtures import BASE

from adapterhub.errors import PublishError
from adapterhub.publish import validate_adapter_dir
from adapterhub.publish.load_check import base_classes

TINY_BERT = BASE / "tiny-bert"  # saved as BertModel (config.json architectures)
REPO_ID = "org/tiny-bert"


def _save(am, name, folder, **config_changes):
    am.save_adapter(folder, name)
    config_file = folder / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config["base_model_name_or_path"] = REPO_ID
    config.update(config_changes)
    for key in [k for k, v in config_changes.items() if v is None]:
        del config[key]
    config_file.write_text(json.dumps(config, indent=2))
    return folder


def _seq_cls_lora(tmp_path, labels=3, **config_changes):
    """A LoRA + classifier trained on BertForSequenceClassification, as PEFT's SEQ_CLS task saves it."""
    from transformers import BertForSequenceClassification

    from adapterhub import AdapterModel

    am = AdapterModel(BertForSequenceClassification.from_pretrained(str(TINY_BERT), num_labels=labels))
    am.add_adapter("cls", "lora", r=2, lora_alpha=4, target_modules=["query", "value"],
                   modules_to_save=["classifier"], task_type="SEQ_CLS")
    return _save(am, "cls", tmp_path / "cls", **config_changes)


def _bare_lora(tmp_path):
    from transformers import BertModel

    from adapterhub import AdapterModel

    am = AdapterModel(BertModel.from_pretrained(str(TINY_BERT)))
    am.add_adapter("bare", "lora", r=2, target_modules=["query"])
    return _save(am, "bare", tmp_path / "bare")


def test_a_sequence_classification_lora_is_checked_on_a_classifier_with_its_labels(tmp_path):
    folder = _seq_cls_lora(tmp_path, labels=3)
    validated = validate_adapter_dir(folder, base_model=str(TINY_BERT))
    checked = validated.load_checked
    assert checked is not None and checked.model_class == "BertForSequenceClassification"
    assert checked.num_labels == 3 and str(checked) == "BertForSequenceClassification(num_labels=3)"
    assert (validated.auto_class, validated.num_labels) == ("AutoModelForSequenceClassification", 3)
    assert validated.base_model.repo_id == REPO_ID


def test_task_option_picks_the_class_when_the_config_has_no_task_type(tmp_path):
    folder = _seq_cls_lora(tmp_path, labels=3, task_type=None)
    checked = validate_adapter_dir(folder, base_model=str(TINY_BERT), task="text-classification").load_checked
    assert str(checked) == "BertForSequenceClassification(num_labels=3)"

    with pytest.raises(PublishError) as err:  # no task at all: the saved class (BertModel) cannot take it
        validate_adapter_dir(folder, base_model=str(TINY_BERT), name="team/tiny-cls")
    problem = "\n".join(err.value.problems)
    assert "team/tiny-cls" in problem and "as the class the base model was saved as" in problem
    assert "task head" in problem and "'bert'" in problem and "different base model" not in problem
    assert "--no-check" in problem


def test_a_bare_model_adapter_pushed_with_a_classification_task_still_loads(tmp_path):
    folder = _bare_lora(tmp_path)
    validated = validate_adapter_dir(folder, base_model=str(TINY_BERT), task="sentiment-analysis")
    assert str(validated.load_checked) == "BertModel" and validated.auto_class == "AutoModel"


def test_the_classes_tried_and_their_order():
    assert [(c.auto_class, c.num_labels) for c in base_classes({"task_type": "SEQ_CLS"}, "text-generation", 4)] == [
        ("AutoModelForSequenceClassification", 4), ("AutoModelForCausalLM", None), (None, None)]
    assert [c.auto_class for c in base_classes({}, "sentiment-analysis", None)] == [
        "AutoModelForSequenceClassification", None]
    assert [c.auto_class for c in base_classes({}, "emotion-classification", None)] == [None]  # no guess


def test_a_published_config_names_the_base_by_repo_id_not_a_local_path(tmp_path):
    from adapterhub.publish.release import stage_release

    folder = _seq_cls_lora(tmp_path)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(TINY_BERT)  # what a model loaded from a local copy records
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
    original = (folder / "adapter_config.json").read_bytes()
    validated = validate_adapter_dir(folder, base_model=REPO_ID, check=False)
    staging = tmp_path / "staging"
    staging.mkdir()
    stage_release(validated, staging, repo_id="alice/tiny-cls", manifest_fields={
        "name": "alice/tiny-cls", "version": "1.0.0", "method": validated.stamp, "format": validated.format,
        "base_model": validated.base_model.as_manifest(), "task": "text-classification", "subtask": None,
        "license": None, "description": None, "metrics": {}, "created": "2026-01-01T00:00:00Z"})
    published = json.loads((staging / "adapter_config.json").read_text())
    assert published["base_model_name_or_path"] == REPO_ID
    assert {k: v for k, v in published.items() if k != "base_model_name_or_path"} == {
        k: v for k, v in config.items() if k != "base_model_name_or_path"}
    assert (folder / "adapter_config.json").read_bytes() == original  # the user's folder is untouched
    card = (staging / "README.md").read_text()
    assert 'AutoModelForSequenceClassification.from_pretrained("org/tiny-bert", num_labels=3)' in card
    assert "adapterhub install hf://alice/tiny-cls@v1.0.0" in card
