"""Torch side of prompt learning: virtual tokens and prefixes injected into a plain transformers model.

One shared state per model (``toolkit.model_state.PerModel``) holds every loaded prompt-learning adapter
of the three methods and what each method has active. Hooks:

* a forward pre-hook (with kwargs) on the model: prepends the active input prompts (prompt tuning,
  P-tuning) to ``inputs_embeds`` and ones to ``attention_mask`` (zeros to ``token_type_ids``, -100 to
  token-level ``labels``), the way PEFT's ``PeftModel.forward`` does; and for PEFT-style prefix
  tuning passes the prefix as the key/value cache (a ``DynamicCache``, under the argument name the
  model takes: see ``adapterhub.toolkit.transformers_compat``; the real tokens then get
  positions after the prefix, as in PEFT). When the call brings a cache that already holds tokens
  (``generate``'s decoding steps), the virtual tokens are in it: nothing is injected again, only the
  mask is widened and the position ids handled the way PEFT's ``generate`` does;
* for AdapterHub-format prompt tuning, a forward hook on the embeddings module appends the prompt
  *after* the embedding layer (tokens keep positions 0..n-1, as in ``adapters``);
* for AdapterHub-format prefix tuning on BERT-like encoders, a pre-hook on every self-attention
  module hands it an object whose ``update()`` prepends that layer's prefix keys/values, and widens
  the attention mask (no position shift, as in ``adapters``);
* for AdapterHub-format prefix tuning on decoders (GPT-2, Llama), the model pre-hook passes the
  prefix as the key/value cache like PEFT's, but gives the real tokens the positions they have
  without a prefix (``adapters`` concatenates the prefix inside each attention and shifts nothing;
  on Llama the prefix keys carry no rotary embedding in both). Every query attends to the whole
  prefix, padded rows included: what ``adapters`` 1.3.0 computes with eager attention. (Its sdpa
  path inverts the boolean mask it builds for the prefix, so with a padding mask the prefix is
  masked out entirely; see ``tests/fixtures/adapters-1.3.0-roundtrip``.)

**Gradient checkpointing.** transformers' checkpointed layers drop the key/value cache argument
(``cache=None``) and re-run each layer during the backward pass. So the prefixes are also handed to
every self-attention module by a pre-hook, from the state of the model call they belong to: when a
layer's cache was dropped, its attention still gets that layer's prefix (a ``_LayerPrefix``), in the
forward and in the re-run alike. That state lives until the next call of the model, not until the
last layer ran, because the re-run comes later.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from adapterhub.toolkit import transformers_compat as compat
from adapterhub.toolkit.model_state import PerModel



class PromptState:
    def __init__(self) -> None:
        self.adapters: dict[str, dict[str, Any]] = {}  # name -> {"method", "module", "config", "style"}
        self.active: dict[str, tuple[str, tuple, tuple | None]] = {}  # method -> (combine, names, batch_sizes)
        self.handles: list[Any] = []
        self.container: nn.ModuleDict | None = None
        self.embeddings_hooked = False  # AdapterHub-format prompts can only be inserted when True
        self.attention_hooked = False  # AdapterHub-format prefixes go into each attention (encoders) when True
        # what the model pre-hook leaves for the embeddings / attention hooks of the same call
        self.after_emb: tuple | None = None
        self.enc_prefix: tuple | None = None
        # the PEFT-style prefix of the current call, (past, layers), for layers whose cache was dropped
        self.layer_prefix: tuple | None = None


#: One state per model, shared by the three prompt-learning methods (one pre-hook serves them all).
_states: PerModel[PromptState] = PerModel(PromptState)


def get_state(model: nn.Module, create: bool = True) -> PromptState | None:
    """The prompt-learning state of ``model``, created (with its hooks) on first use when ``create``."""
    state = _states.get(model)
    if state is None and create:
        state = _states(model)
        model.adapterhub_prompts = nn.ModuleDict()
        state.container = model.adapterhub_prompts
        state.handles.append(model.register_forward_pre_hook(_model_pre_hook, with_kwargs=True))
        embeddings = embeddings_module(model)
        if embeddings is not None:
            state.embeddings_hooked = True
            state.handles.append(embeddings.register_forward_hook(_make_embeddings_hook(model)))
        for idx, attn in enumerate(encoder_self_attentions(model)):
            state.attention_hooked = True
            state.handles.append(attn.register_forward_pre_hook(_make_attention_hook(model, idx), with_kwargs=True))
        for idx, attn in enumerate(self_attentions(model)):
            state.handles.append(attn.register_forward_pre_hook(_make_layer_prefix_hook(model, idx), with_kwargs=True))
    return state


def embeddings_module(model: nn.Module) -> nn.Module | None:
    """The module after which AdapterHub-format prompts are inserted (BERT-like ``embeddings``), or None
    (GPT-2's ``wte``/``wpe`` and Llama's ``embed_tokens`` are no such module)."""
    embeddings = getattr(getattr(model, "base_model", model), "embeddings", None)
    return embeddings if isinstance(embeddings, nn.Module) else None


def drop_state(model: nn.Module) -> None:
    state = _states.drop(model)
    if state is None:
        return
    for handle in state.handles:
        handle.remove()
    if "adapterhub_prompts" in model._modules:
        del model.adapterhub_prompts


def encoder_self_attentions(model: nn.Module) -> list[nn.Module]:
    """BERT-like self-attention modules (query/key/value Linear), in layer order; [] for decoders."""
    base = getattr(model, "base_model", model)
    if getattr(model.config, "is_decoder", False) or getattr(model.config, "is_encoder_decoder", False):
        return []
    return [m for n, m in base.named_modules()
            if n.endswith("attention.self") and all(hasattr(m, a) for a in ("query", "key", "value"))]


def self_attentions(model: nn.Module) -> list[nn.Module]:
    """Every self-attention module, in layer order: BERT-like ones, else decoder attentions (``layer_idx``)."""
    encoder = encoder_self_attentions(model)
    if encoder:
        return encoder
    base = getattr(model, "base_model", model)
    found = [m for m in base.modules() if type(m).__name__.endswith("Attention")
             and isinstance(getattr(m, "layer_idx", None), int) and not getattr(m, "is_cross_attention", False)]
    return sorted(found, key=lambda m: m.layer_idx)


# --- the prompt modules --------------------------------------------------------------------------


class FixedPrompt(nn.Module):
    """Stored prompt embeddings (what PEFT saves as ``prompt_embeddings``)."""

    def __init__(self, embeddings: torch.Tensor) -> None:
        super().__init__()
        self.embedding = nn.Parameter(embeddings.detach().clone())

    def forward(self) -> torch.Tensor:
        return self.embedding


class EncodedPrompt(nn.Module):
    """A trainable reparameterisation (PEFT's PromptEncoder / PrefixEncoder) evaluated on all indices."""

    def __init__(self, encoder: nn.Module, num_virtual_tokens: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.register_buffer("indices", torch.arange(num_virtual_tokens), persistent=False)

    def forward(self) -> torch.Tensor:
        return self.encoder(self.indices.unsqueeze(0))[0]


def _active(state: PromptState, methods: tuple[str, ...], style: str | None = None):
    """[(combine, [entries], sizes)] for the given methods; entries are adapter dicts or None."""
    out = []
    for method in methods:
        combine, names, sizes = state.active.get(method, ("stack", (), None))
        entries = [state.adapters[n] if n is not None else None for n in names]
        if style is not None:
            entries = [e for e in entries if e is None or e["style"] == style]
        if any(e is not None for e in entries):
            out.append((combine, entries, sizes))
    return out


def _batched(blocks, batch: int) -> torch.Tensor | None:
    """[batch, n_virtual, width] from the active blocks (stack: concatenated; rows: one prompt per row)."""
    parts = []
    for combine, entries, _ in blocks:
        if combine == "rows":  # one prompt per row; each adapter's prompt computed once
            if len(entries) != batch:
                raise ValueError(f"adapter_names/BatchSplit: prompts for {len(entries)} rows but the batch has "
                                 f"{batch} rows (BatchSplit: make batch_sizes add up to the batch size)")
            prompts = {id(e): e["module"]() for e in entries}
            parts.append(torch.stack([prompts[id(e)] for e in entries]))
        else:
            prompt = torch.cat([e["module"]() for e in entries], 0)
            parts.append(prompt.unsqueeze(0).expand(batch, -1, -1))
    if not parts:
        return None
    return torch.cat(parts, 1)


def _virtual_length(blocks) -> int:
    """How many virtual tokens the active blocks put in front of each row."""
    lengths = []
    for combine, entries, _ in blocks:
        modules = [e["module"] for e in entries if e is not None]
        if combine == "rows":
            lengths.append(int(modules[0]().shape[0]))  # every row has the same length (activate_rows checks)
        else:
            lengths.extend(int(m().shape[0]) for m in modules)
    return sum(lengths)


def _prefix_mask(mask: torch.Tensor, n: int) -> torch.Tensor:
    ones = torch.ones(mask.shape[0], n, dtype=mask.dtype, device=mask.device)
    return torch.cat([ones, mask], 1)


def _model_pre_hook(model: nn.Module, args: tuple, kwargs: dict):
    state = _states.get(model)
    if state is None:
        return None
    # a new call: what the previous one left for its layers (and their checkpointed re-runs) is done
    state.enc_prefix = state.layer_prefix = None
    input_blocks = _active(state, ("prompt_tuning", "p_tuning"), style="peft")
    prefix_blocks = _active(state, ("prefix_tuning",), style="peft")
    after_emb = _active(state, ("prompt_tuning",), style="adapters")
    enc_prefix = _active(state, ("prefix_tuning",), style="adapters")
    dec_prefix = [] if state.attention_hooked else enc_prefix  # decoders: the cache, positions unshifted
    enc_prefix = enc_prefix if state.attention_hooked else []
    if not (input_blocks or prefix_blocks or after_emb or enc_prefix or dec_prefix):
        return None
    kwargs = dict(kwargs)
    if args:
        kwargs.setdefault("input_ids", args[0])
        args = args[1:]
    input_ids = kwargs.get("input_ids")
    embeds = kwargs.get("inputs_embeds")
    batch = (input_ids if input_ids is not None else embeds).shape[0]
    length = (input_ids if input_ids is not None else embeds).shape[1]
    mask = kwargs.get("attention_mask")
    past = compat.get_cache(kwargs)
    past_len = compat.cache_length(past)
    # A cache that already holds tokens holds the virtual tokens / prefix too (a decoding step of
    # generate, or a caller's own loop): inject nothing again, as PEFT's generate does.
    cached = past is not None and past_len != 0
    virtual = 0  # virtual positions in front of the real tokens, for the attention mask
    if input_blocks:
        n = _virtual_length(input_blocks)
        virtual += n
        if kwargs.get("position_ids") is not None:
            kwargs["position_ids"] = None  # PEFT drops them: positions now cover the prompt too
        if not cached:
            prompts = _batched(input_blocks, batch)
            if embeds is None:
                embeds = model.get_input_embeddings()(input_ids)
            kwargs["inputs_embeds"] = torch.cat([prompts.to(embeds.dtype), embeds], 1)
            kwargs["input_ids"] = None
            tti = kwargs.get("token_type_ids")
            if tti is not None:
                kwargs["token_type_ids"] = torch.cat([torch.zeros_like(tti[:, :1]).expand(-1, n), tti], 1)
            labels = kwargs.get("labels")
            if labels is not None and labels.dim() == 2 and labels.shape[1] == embeds.shape[1]:
                kwargs["labels"] = torch.cat([torch.full_like(labels[:, :1], -100).expand(-1, n), labels], 1)
            length += n
    after_emb_n = 0
    if after_emb:
        if not state.embeddings_hooked:
            # check() refuses this when loading; never widen the mask for a prompt nobody inserts
            raise RuntimeError("AdapterHub-format prompt tuning is active on a model without an embeddings module")
        after_emb_n = sum(e["module"]().shape[0] for _, es, _ in after_emb for e in es if e is not None)
        if mask is not None:
            mask = _prefix_mask(mask, after_emb_n)
        # adapters inserts after the embedding layer: token type ids keep the real length
        state.after_emb = (after_emb, batch)
        length += after_emb_n
    if prefix_blocks:
        n = _virtual_length(prefix_blocks)
        virtual += n
        if not cached:
            past, _, layers, _ = _prefix_tensor(model, prefix_blocks, batch)
            compat.set_cache(model, kwargs, _prefix_cache(model, past, layers))
            state.layer_prefix = (past, layers)
            past_len = n
        if kwargs.get("position_ids") is not None:
            # the real tokens sit after the prefix in every layer's keys (PEFT offsets them likewise)
            kwargs["position_ids"] = kwargs["position_ids"] + n
    if dec_prefix:
        n = _virtual_length(dec_prefix)
        virtual += n
        # real tokens already in the cache (generate's decoding steps), without the prefix
        real_past = past_len - n if cached else 0
        if not cached:
            past, _, layers, _ = _prefix_tensor(model, dec_prefix, batch)
            compat.set_cache(model, kwargs, _prefix_cache(model, past, layers))
            state.layer_prefix = (past, layers)  # for layers whose cache gradient checkpointing dropped
            past_len = n
        if kwargs.get("position_ids") is None:
            ref = input_ids if input_ids is not None else embeds
            positions = torch.arange(real_past, real_past + length, device=ref.device)
            kwargs["position_ids"] = positions.unsqueeze(0).expand(batch, -1)
    if virtual and mask is not None and mask.dim() == 2 and mask.shape[1] + virtual == past_len + length:
        # the caller's mask covers the real tokens only (generate's always does): the virtual
        # tokens are attended by every row, padded or not, as in PEFT
        mask = _prefix_mask(mask, virtual)
    if enc_prefix:
        state.enc_prefix = (enc_prefix, batch)
    if after_emb_n and mask is not None and mask.dim() == 2 and not prefix_blocks and _is_encoder(model):
        mask = _adapters_prompt_mask(mask, after_emb_n, next(model.parameters()).dtype)
    if mask is not None:
        kwargs["attention_mask"] = mask
    return args, kwargs


def _is_encoder(model: nn.Module) -> bool:
    config = model.config
    return not (getattr(config, "is_decoder", False) or getattr(config, "is_encoder_decoder", False))


def _adapters_prompt_mask(mask: torch.Tensor, n_prompt: int, dtype: torch.dtype) -> torch.Tensor:
    """The 4-D additive mask ``[batch, 1, query, key]`` that ``adapters`` 1.3.0 effectively uses for
    AdapterHub-format prompt tuning on encoders.

    Parity with the library, which users of this format expect: with transformers' default (sdpa)
    attention, ``adapters`` widens the already-expanded 4-D mask with zeros along *both* the query and
    the key axis, so the prompt query rows attend to every key, padded ones included (token rows still
    skip padded keys). On a right-padded row this changes the prompt positions' outputs, and through
    them every position in later layers. ``mask`` is the 2-D mask already widened by ``n_prompt`` ones
    (prompt first); a 4-D mask is passed through by transformers' mask builders as-is, for eager and
    sdpa attention alike, so both give the library's (sdpa) result.
    """
    keys = mask.to(torch.bool)[:, None, None, :].expand(-1, 1, mask.shape[1], -1).clone()
    keys[:, :, :n_prompt, :] = True  # prompt query rows: every key allowed
    additive = torch.zeros(keys.shape, dtype=dtype, device=mask.device)
    return additive.masked_fill(~keys, torch.finfo(dtype).min)


def _prefix_shapes(model: nn.Module, entry: dict) -> tuple[int, int, int]:
    """(num_layers, kv heads, head_dim) the way PEFT sizes a prefix (GQA: num_key_value_heads)."""
    cfg = entry["config"]
    layers = int(cfg["num_layers"])
    heads = int(cfg["num_attention_heads"])
    head_dim = int(cfg["token_dim"]) // heads
    return layers, heads, head_dim


def _prefix_tensor(model: nn.Module, blocks, batch: int) -> tuple[torch.Tensor, int, int, int]:
    """[layers*2, batch, heads, n, head_dim] for the active prefixes (stacked along n)."""
    entries = [e for _, es, _ in blocks for e in es if e is not None]
    layers, heads, head_dim = _prefix_shapes(model, entries[0])
    for e in entries[1:]:
        if _prefix_shapes(model, e) != (layers, heads, head_dim):
            raise ValueError("active prefix-tuning adapters have different shapes and cannot be combined")
    flat = _batched(blocks, batch)  # [batch, n, layers*2*heads*head_dim]
    n = flat.shape[1]
    past = flat.view(batch, n, layers * 2, heads, head_dim).permute(2, 0, 3, 1, 4)
    return past, n, layers, heads


def _prefix_cache(model: nn.Module, past: torch.Tensor, layers: int):
    """A key/value cache that already holds the prefixes ``past`` (from :func:`_prefix_tensor`), one
    (key, value) pair per layer."""
    dtype = next(model.parameters()).dtype
    return compat.dynamic_cache([(past[2 * i].to(dtype), past[2 * i + 1].to(dtype)) for i in range(layers)])


def _make_embeddings_hook(model: nn.Module):
    def hook(module, args, output):
        state = _states.get(model)
        pending = None if state is None else state.after_emb
        if pending is None:
            return output
        state.after_emb = None
        blocks, batch = pending
        prompts = _batched(blocks, output.shape[0])
        return torch.cat([prompts.to(output.dtype), output], 1)

    return hook


def _make_layer_prefix_hook(model: nn.Module, layer: int):
    """A PEFT-style prefix for a self-attention module whose cache argument a checkpointed layer dropped."""

    def hook(module, args, kwargs):
        state = _states.get(model)
        pending = None if state is None else state.layer_prefix
        if pending is None or compat.get_cache(kwargs) is not None:
            return None  # no prefix, or the cache that holds it reached the layer
        past, layers = pending
        if layer >= layers:
            return None
        kwargs = compat.set_cache(module, dict(kwargs), _LayerPrefix(past[2 * layer], past[2 * layer + 1]))
        return args, kwargs

    return hook


class _LayerPrefix:
    """Stands in for a cache inside one self-attention call: prepends this layer's prefix."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.keys, self.values = keys, values

    def update(self, key, value, layer_idx, *args, **kwargs):
        return (torch.cat([self.keys.to(key.dtype), key], 2), torch.cat([self.values.to(value.dtype), value], 2))


def _make_attention_hook(model: nn.Module, layer: int):
    def hook(module, args, kwargs):
        state = _states.get(model)
        pending = None if state is None else state.enc_prefix
        if pending is None:
            return None
        blocks, batch = pending
        past, n, layers, _ = _prefix_tensor(model, blocks, batch)
        if layer >= layers:
            return None
        kwargs = dict(kwargs)
        compat.set_cache(module, kwargs, _LayerPrefix(past[2 * layer], past[2 * layer + 1]))
        mask = kwargs.get("attention_mask")
        if mask is not None:
            if mask.dtype == torch.bool:
                pad = torch.ones(*mask.shape[:-1], n, dtype=torch.bool, device=mask.device)
            else:
                pad = torch.zeros(*mask.shape[:-1], n, dtype=mask.dtype, device=mask.device)
            kwargs["attention_mask"] = torch.cat([pad.expand(mask.shape[0], *pad.shape[1:]), mask], -1)
        return args, kwargs

    return hook
