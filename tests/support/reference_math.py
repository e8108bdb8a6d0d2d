"""Hand-written reference forwards for tiny BERT, used to check compositions of different methods.

Everything here is computed from the raw adapter tensors with the base model's own modules and
plain torch math; no adapterhub code runs. Each formula is first checked against the output the
`adapters` 1.3.0 library (or PEFT) produced for that piece alone (tests/methods/test_composition.py),
so that a composed reference is trustworthy.
"""

from __future__ import annotations

import re
import types
from collections.abc import Sequence

import torch
from torch.nn import functional as F

from support.fixtures import BASE

_LORA_A = re.compile(r"^(?P<module>.+?)(?:\.loras\.[^.]+)?\.lora_A(?:\.weight)?$")


def lora_deltas(state_dict: dict, scale: float) -> dict[str, torch.Tensor]:
    """module path -> scale * B @ A, for adapters-format (``.loras.<n>.lora_A``) or PEFT keys."""
    out = {}
    for key, a in state_dict.items():
        m = _LORA_A.match(key)
        if not m:
            continue
        b = state_dict[key.replace("lora_A", "lora_B")]
        out[m["module"]] = scale * (b @ a)
    return out


def bottleneck_tensors(state_dict: dict) -> dict[int, dict[str, torch.Tensor]]:
    """layer index -> {down_w, down_b, up_w, up_b} for a seq_bn adapter (output adapter only)."""
    out: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        m = re.match(r"^encoder\.layer\.(\d+)\.output\.adapters\.[^.]+\.(adapter_down\.0|adapter_up)\.(weight|bias)$", key)
        assert m, f"unexpected bottleneck key {key}"
        part = ("down_" if m[2] == "adapter_down.0" else "up_") + m[3][0]
        out.setdefault(int(m[1]), {})[part] = value
    return out


def _bn(t: dict, x: torch.Tensor) -> torch.Tensor:
    return F.linear(torch.relu(F.linear(x, t["down_w"], t["down_b"])), t["up_w"], t["up_b"])


def reference_bert(
    inputs: dict,
    *,
    lora: Sequence[tuple[dict[str, torch.Tensor], float]] = (),
    bn_stack: Sequence[dict] = (),
    bn_average: Sequence[tuple[dict, float]] = (),
    prompt: torch.Tensor | None = None,
) -> torch.Tensor:
    """last_hidden_state of tiny BERT with, by hand:

    * ``lora``: (deltas from :func:`lora_deltas`, weight) added to the Linear weights (merged);
    * ``bn_stack``: seq_bn (Pfeiffer) adapters after each feed-forward block, one after another
      (adapters' Stack: each re-applies LN(h + x) before its bottleneck, its residual is h);
    * ``bn_average``: adapters' Average: LN(mean_i(w_i * (bn_i(LN(h + x)) + h)) + x);
    * ``prompt``: [n, hidden] virtual tokens prepended to the word embeddings, mask widened by ones
      (PEFT's prompt tuning).
    """
    from transformers import BertModel

    model = BertModel.from_pretrained(str(BASE / "tiny-bert")).eval()
    with torch.no_grad():
        for deltas, weight in lora:
            for path, delta in deltas.items():
                model.get_submodule(path).weight += weight * delta
    stack = [bottleneck_tensors(sd) for sd in bn_stack]
    average = [(bottleneck_tensors(sd), w) for sd, w in bn_average]

    def output_forward(self, hidden_states, input_tensor):
        h = self.dropout(self.dense(hidden_states))
        if average:
            z = self.LayerNorm(h + input_tensor)
            outs = [w * (_bn(t[self._ref_idx], z) + h) for t, w in average]
            return self.LayerNorm(torch.stack(outs).mean(0) + input_tensor)
        for tensors in stack:
            residual = h
            h = _bn(tensors[self._ref_idx], self.LayerNorm(h + input_tensor)) + residual
        return self.LayerNorm(h + input_tensor)

    for idx, layer in enumerate(model.encoder.layer):
        layer.output._ref_idx = idx
        layer.output.forward = types.MethodType(output_forward, layer.output)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        if prompt is None:
            return model(input_ids=ids, attention_mask=mask).last_hidden_state
        embeds = model.embeddings.word_embeddings(ids)
        embeds = torch.cat([prompt.unsqueeze(0).expand(ids.shape[0], -1, -1), embeds], 1)
        mask = torch.cat([torch.ones(ids.shape[0], prompt.shape[0], dtype=mask.dtype), mask], 1)
        return model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
