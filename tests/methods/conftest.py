"""Fixtures for the bottleneck / BitFit / prompt-learning / AdapterHub-format tests."""

from __future__ import annotations

import pytest
from methods_support import ADAPTERS, BASE, load_reference


@pytest.fixture
def bert():
    from transformers import BertModel

    return BertModel.from_pretrained(str(BASE / "tiny-bert")).eval()


@pytest.fixture
def gpt2():
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(str(BASE / "tiny-gpt2")).eval()


@pytest.fixture
def llama():
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(str(BASE / "tiny-llama")).eval()


@pytest.fixture
def bert_inputs():
    ref = load_reference(ADAPTERS / "seq_bn")
    return {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}
