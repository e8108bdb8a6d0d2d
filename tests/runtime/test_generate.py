"""am.generate() through active adapters gives the tokens PEFT's own generate gives (greedy decoding).

Every comparison checks the sequences and every decoding step's scores (atol 1e-5), on a full batch
and on a left-padded one (the padding generation uses), so the cached decoding steps, the attention
mask and the position ids all have to agree with PEFT's, not only the first step.
"""

from __future__ import annotations

import pytest
import torch

from adapterhub import AdapterModel

from runtime_support import SHARED_FIXTURES, load_base, load_case

PROMPT = torch.tensor([[5, 17, 42, 9], [3, 3, 71, 100]])
#: row 0 left-padded by two (pad id 0), row 1 full: what a tokenizer with padding_side="left" gives
PADDED = torch.tensor([[0, 0, 42, 9], [3, 3, 71, 100]])
PADDED_MASK = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
BATCHES = {"full": (PROMPT, torch.ones_like(PROMPT)), "left_padded": (PADDED, PADDED_MASK)}
NEW_TOKENS = 6
PAD, EOS = 0, 2  # the tiny bases' generation_config: eos_token_id=2


def _greedy(model, batch="full"):
    input_ids, attention_mask = BATCHES[batch]
    with torch.no_grad():
        return model.generate(
            input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=NEW_TOKENS, do_sample=False,
            pad_token_id=PAD, output_scores=True, return_dict_in_generate=True,
        )


def _assert_same_generation(got, expected):
    # PEFT returns only the real tokens (prompt + new ones) for every method.
    assert got.sequences.shape == expected.sequences.shape, (got.sequences.shape, expected.sequences.shape)
    assert torch.equal(got.sequences, expected.sequences)
    # Every decoding step's scores, not just the argmax, equal the reference's.
    assert len(got.scores) == len(expected.scores)
    for ours, theirs in zip(got.scores, expected.scores, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def _assert_adapter_acts(am, got, batch):
    with am.disabled():
        plain = _greedy(am, batch)
    # The adapter really acts during generation (the tiny random model may keep the same argmax).
    assert (plain.scores[0] - got.scores[0]).abs().max() > 1e-3
    assert (plain.scores[-1] - got.scores[-1]).abs().max() > 1e-3


@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("case", ["lora", "prompt_tuning", "prefix_tuning"])
def test_generate_matches_peft(case, batch):
    from peft import PeftModel

    folder, meta, _ = load_case(case)
    reference = PeftModel.from_pretrained(load_base(meta), str(folder)).eval()
    expected = _greedy(reference, batch)

    am = AdapterModel(load_base(meta))
    am.set_adapter(am.load_adapter(folder, name=case))
    got = _greedy(am, batch)
    _assert_same_generation(got, expected)
    _assert_adapter_acts(am, got, batch)


# -- adapters made by real PEFT in the test ------------------------------------------------------------


def _tiny(model: str):
    import transformers

    cls = {"tiny-gpt2": transformers.GPT2LMHeadModel, "tiny-llama": transformers.LlamaForCausalLM}[model]
    return cls.from_pretrained(str(SHARED_FIXTURES / "base" / model)).eval()


def _peft_config(case: str):
    import peft

    if case == "p_tuning":  # MLP prompt encoder on GPT-2
        return "tiny-gpt2", peft.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4,
                                                     encoder_hidden_size=32)
    if case == "p_tuning_lstm":
        return "tiny-gpt2", peft.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=3,
                                                     encoder_hidden_size=16,
                                                     encoder_reparameterization_type="LSTM")
    if case == "llama_prefix_tuning":  # grouped-query attention: 4 query heads, 2 key/value heads
        return "tiny-llama", peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)
    if case == "llama_prompt_tuning":  # rotary positions: the position ids must match too
        return "tiny-llama", peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)
    raise AssertionError(case)


@pytest.fixture(scope="module")
def peft_adapters(tmp_path_factory):
    """case -> (base name, folder of an adapter trained-looking (randomised) and saved by PEFT)."""
    from peft import get_peft_model

    made = {}
    for seed, case in enumerate(("p_tuning", "p_tuning_lstm", "llama_prefix_tuning", "llama_prompt_tuning")):
        base_name, config = _peft_config(case)
        peft_model = get_peft_model(_tiny(base_name), config)
        g = torch.Generator().manual_seed(40 + seed)
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if "prompt_encoder" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        folder = tmp_path_factory.mktemp(case)
        peft_model.save_pretrained(str(folder))
        made[case] = (base_name, folder)
    return made


@pytest.mark.parametrize("batch", list(BATCHES))
@pytest.mark.parametrize("case", ["p_tuning", "p_tuning_lstm", "llama_prefix_tuning", "llama_prompt_tuning"])
def test_generate_matches_peft_for_adapters_made_by_peft(peft_adapters, case, batch):
    from peft import PeftModel

    base_name, folder = peft_adapters[case]
    reference = PeftModel.from_pretrained(_tiny(base_name), str(folder)).eval()
    expected = _greedy(reference, batch)

    am = AdapterModel(_tiny(base_name))
    am.set_adapter(am.load_adapter(folder, name=case))
    assert am.adapters[case].method == reference.peft_config["default"].peft_type.value.lower()
    got = _greedy(am, batch)
    _assert_same_generation(got, expected)
    _assert_adapter_acts(am, got, batch)


# -- Stack(LoRA, prompt tuning): PEFT cannot compose these -------------------------------------------


def _prompt_math_generate(model, prompt: torch.Tensor, batch: str):
    """Greedy decoding the way PEFT defines prompt tuning, written out without a cache: at every step
    the whole sequence runs again as ``cat(prompt, embed(tokens))`` with the mask widened by ones and
    default positions 0..n-1 (PEFT drops position ids, so padding does not shift them)."""
    input_ids, attention_mask = BATCHES[batch]
    ids, mask = input_ids.clone(), attention_mask.clone()
    rows, n = ids.shape[0], prompt.shape[0]
    finished = torch.zeros(rows, dtype=torch.bool)
    scores = []
    with torch.no_grad():
        for _ in range(NEW_TOKENS):
            embeds = torch.cat([prompt.unsqueeze(0).expand(rows, -1, -1), model.get_input_embeddings()(ids)], 1)
            full_mask = torch.cat([torch.ones(rows, n, dtype=mask.dtype), mask], 1)
            logits = model(inputs_embeds=embeds, attention_mask=full_mask, use_cache=False).logits[:, -1]
            scores.append(logits)
            token = torch.where(finished, torch.full_like(logits[:, 0], PAD, dtype=ids.dtype), logits.argmax(-1))
            finished |= token == EOS
            ids = torch.cat([ids, token[:, None]], 1)
            mask = torch.cat([mask, torch.ones(rows, 1, dtype=mask.dtype)], 1)
            if finished.all():
                break
    return ids, scores


@pytest.mark.parametrize("batch", list(BATCHES))
def test_generate_stack_lora_and_prompt_tuning_matches_the_math(batch):
    """PEFT has no composition of LoRA with prompt tuning (PeftMixedModel takes LoRA-like tuners only),
    so the reference is PEFT's own LoRA model fed PEFT's prompt-tuning inputs (see _prompt_math_generate).
    That written-out reference is first checked against PEFT's generate for the prompt alone."""
    from peft import PeftModel
    from safetensors.torch import load_file

    lora_dir, lora_meta, _ = load_case("lora")
    prompt_dir, prompt_meta, _ = load_case("prompt_tuning")
    assert lora_meta["base"] == prompt_meta["base"]
    prompt = load_file(str(prompt_dir / "adapter_model.safetensors"))["prompt_embeddings"]

    # the written-out math is PEFT's prompt tuning under generate
    peft_prompt = _greedy(PeftModel.from_pretrained(load_base(prompt_meta), str(prompt_dir)).eval(), batch)
    ids, scores = _prompt_math_generate(load_base(prompt_meta), prompt, batch)
    assert torch.equal(ids, peft_prompt.sequences)
    for ours, theirs in zip(scores, peft_prompt.scores, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)

    peft_lora = PeftModel.from_pretrained(load_base(lora_meta), str(lora_dir)).eval()
    expected_ids, expected_scores = _prompt_math_generate(peft_lora, prompt, batch)

    am = AdapterModel(load_base(lora_meta))
    am.load_adapter(lora_dir, name="lora")
    am.load_adapter(prompt_dir, name="prompt")
    am.set_adapter(["lora", "prompt"])
    got = _greedy(am, batch)
    assert torch.equal(got.sequences, expected_ids)
    assert len(got.scores) == len(expected_scores)
    for ours, theirs in zip(got.scores, expected_scores, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    # both adapters act: dropping either one changes the scores
    for alone in ("lora", "prompt"):
        am.set_adapter(alone)
        assert (_greedy(am, batch).scores[-1] - got.scores[-1]).abs().max() > 1e-3
