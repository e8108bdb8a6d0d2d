"""TRL's SFTTrainer with an AdapterModel: every method trains through TRL's fused LM head (prompt and
prefix methods included, whose virtual tokens TRL's head must not skip), with gradient checkpointing
on (SFTConfig's default), and checkpoints hold the adapter files.

TRL is a test dependency (``trl>=1.16`` in the ``test`` extra, pinned at its floor in
.ci/lower-bounds.txt), so CI runs these tests; a plain install without TRL skips them.
"""

from __future__ import annotations

import pytest
import torch
from support.fixtures import BASE

from adapterhub import AdapterModel, SaveAdaptersCallback
from adapterhub.plugin import detect_method, get_method

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

#: method -> (options, learning rate): IA3's scaling vectors and a 4-token prompt move slowly
CASES = {
    "lora": ({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}, 2e-2),
    "ia3": ({}, 1e-1),
    "prompt_tuning": ({"num_virtual_tokens": 4}, 1e-1),
    "prefix_tuning": ({"num_virtual_tokens": 4}, 2e-2),
    "p_tuning": ({"num_virtual_tokens": 4, "encoder_hidden_size": 16}, 2e-2),
    "bottleneck": ({"reduction_factor": 4}, 2e-2),
}


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(60)]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


def _texts(n: int = 16) -> list[dict[str, str]]:
    generator = torch.Generator().manual_seed(0)
    # a pattern to learn: each sentence counts up from a random start
    starts = torch.randint(4, 40, (n,), generator=generator).tolist()
    return [{"text": " ".join(f"w{s + i}" for i in range(8))} for s in starts]


@pytest.mark.parametrize("method", sorted(CASES))
def test_sft_trainer_trains_an_adapter_model(method, tmp_path):
    from transformers import LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    am = AdapterModel(LlamaForCausalLM.from_pretrained(str(BASE / "tiny-llama")))
    options, learning_rate = CASES[method]
    am.add_adapter("sft", method, **options)
    adapter = get_method(method).parameters(am.model, "sft")
    before = [p.detach().clone() for p in adapter]
    frozen = {n: p.detach().clone() for n, p in am.named_parameters() if not p.requires_grad}
    data = datasets.Dataset.from_list(_texts())
    args = trl.SFTConfig(str(tmp_path / "run"), per_device_train_batch_size=8, max_steps=6, learning_rate=learning_rate,
                         logging_steps=1, save_steps=3, report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
                         gradient_checkpointing=True, bf16=False)  # float32: outputs compared exactly
    trainer = trl.SFTTrainer(model=am, args=args, train_dataset=data, eval_dataset=data,
                             processing_class=_tokenizer(), callbacks=[SaveAdaptersCallback()])
    untrained = trainer.evaluate()["eval_loss"]
    trainer.train()
    assert trainer.evaluate()["eval_loss"] < untrained - 0.02
    assert any(not torch.equal(p.detach(), b) for p, b in zip(adapter, before, strict=True))
    params = dict(am.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen.items())

    # the adapter acts in plain inference too (TRL's fused head saw the same model)
    batch = _tokenizer()(["w5 w6 w7 w8"], return_tensors="pt")
    am.eval()
    real = batch["input_ids"].shape[1]  # prompt methods also return logits for their virtual tokens, as PEFT does
    with torch.no_grad():
        with_adapter = am(**batch).logits
        with am.disable_adapter():
            without = am(**batch).logits
    assert not torch.allclose(with_adapter[:, -real:], without, atol=1e-4)

    checkpoint = tmp_path / "run" / "checkpoint-6"
    assert (checkpoint / "adapter_config.json").is_file() and (checkpoint / "trainer_state.json").is_file()
    assert detect_method(checkpoint, am.model).name == method
    reloaded = AdapterModel(LlamaForCausalLM.from_pretrained(str(BASE / "tiny-llama")))
    reloaded.set_adapter(reloaded.load_adapter(checkpoint, name="sft"))
    reloaded.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, with_adapter, atol=1e-5, rtol=0)
