"""Test-wide isolation: every test gets its own ADAPTERHUB_HOME and HF cache, and nothing can
reach huggingface.co (telemetry off, no token from the developer's machine)."""

from __future__ import annotations

import os
import warnings

import pytest

# Set before anything imports huggingface_hub, which reads these at import time.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.pop("HF_TOKEN", None)
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "ADAPTERHUB_OFFLINE", "HF_ENDPOINT"):
    os.environ.pop(_name, None)

# The models in the tests are tiny: one intra-op thread is faster than several spin-waiting ones
# (and the numbers do not depend on how many cores the machine has).
os.environ.setdefault("OMP_NUM_THREADS", "1")

# huggingface_hub freezes HF_HUB_OFFLINE, HF_ENDPOINT, ... when first imported: import it now, with
# the clean environment above, so that no test that sets those variables can freeze them for the rest.
import huggingface_hub.constants  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _restore_environment():
    """Whatever a test (or code it imports) does to os.environ is undone afterwards."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch, _restore_environment):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("ADAPTERHUB_HOME", str(home / "adapterhub"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hf" / "hub"))
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("ADAPTERHUB_INDEX", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    yield home


# --- tiny models shared by the runtime, plugin and toolkit tests ------------------------------------

warnings.filterwarnings("ignore", message=".*Already found a `peft_config`.*")


@pytest.fixture
def bert():
    from transformers import BertModel

    from support.fixtures import BASE

    return BertModel.from_pretrained(str(BASE / "tiny-bert")).eval()


@pytest.fixture
def gpt2():
    from transformers import GPT2LMHeadModel

    from support.fixtures import BASE

    return GPT2LMHeadModel.from_pretrained(str(BASE / "tiny-gpt2")).eval()


@pytest.fixture
def llama():
    from transformers import LlamaForCausalLM

    from support.fixtures import BASE

    return LlamaForCausalLM.from_pretrained(str(BASE / "tiny-llama")).eval()


@pytest.fixture
def bert_inputs():
    from support.fixtures import ADAPTERS, load_reference

    ref = load_reference(ADAPTERS / "seq_bn")
    return {"input_ids": ref["input_ids"], "attention_mask": ref["attention_mask"]}


@pytest.fixture(scope="module")
def inputs():
    from adapterhub.testing import tiny_inputs

    return tiny_inputs()


@pytest.fixture(scope="module")
def llama_base():
    from adapterhub.testing import tiny_llama

    return tiny_llama(seed=1)


@pytest.fixture
def fresh_plugins(monkeypatch):
    """A plugin manager with only the built-ins (the ``manager`` module), restored afterwards."""
    from adapterhub.plugin import manager, registry

    registry.reset()
    monkeypatch.setenv("ADAPTERHUB_LOAD_PLUGINS", "")
    yield manager
    registry.reset()
