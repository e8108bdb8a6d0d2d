"""Helpers for plugin authors and adapterhub's own tests: tiny random models, PEFT-saved adapters,
a fresh plugin manager, and the CLI run in-process. torch, transformers and peft are imported inside
the functions."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def tiny_gpt2(seed: int = 0, *, vocab_size: int = 128, n_embd: int = 64, n_layer: int = 2) -> Any:
    """A random GPT2LMHeadModel (Conv1D layers, tied embeddings) in eval mode."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size, n_positions=64, n_embd=n_embd, n_layer=n_layer, n_head=4,
        bos_token_id=0, eos_token_id=0,
    )
    return GPT2LMHeadModel(config).eval()


def tiny_llama(seed: int = 0, *, vocab_size: int = 128, hidden_size: int = 64, num_layers: int = 2) -> Any:
    """A random LlamaForCausalLM (grouped-query attention) in eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def tiny_bert(
    seed: int = 0, *, hidden_size: int = 64, num_layers: int = 2, num_labels: int | None = None,
    vocab_size: int = 128,
) -> Any:
    """A random BertModel, or BertForSequenceClassification when ``num_labels`` is given."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=4, intermediate_size=2 * hidden_size, max_position_embeddings=64,
    )
    if num_labels is not None:
        config.num_labels = num_labels
        return BertForSequenceClassification(config).eval()
    return BertModel(config).eval()


def tiny_inputs(batch: int = 3, length: int = 10, *, vocab_size: int = 128, seed: int = 0) -> dict[str, Any]:
    """input_ids and attention_mask; row 1 is right-padded (its last 3 positions masked)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, vocab_size, (batch, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    if batch > 1:
        attention_mask[1, -3:] = 0
        input_ids[1, -3:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def randomize_adapter(model: Any, seed: int = 0, std: float = 0.05, markers: tuple[str, ...] = ("lora_", "ia3_l")) -> None:
    """Give freshly initialised adapter weights random values so that no adapter is a no-op.

    IA3 vectors become ``1 + std * N(0, 1)``; everything else ``std * N(0, 1)``; DoRA magnitudes are
    left alone (they are initialised from the base weight norms).
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not any(m in name for m in markers) or "magnitude" in name:
                continue
            noise = torch.randn(param.shape, generator=generator) * std
            param.copy_(1 + noise if "ia3_l" in name else noise)


def save_peft_adapter(
    base: Any, config: Any, path: str | Path, *, seed: int = 0, adapter_name: str = "default"
) -> Path:
    """Make a PEFT adapter with real PEFT (``get_peft_model``) on a deep copy of ``base``, randomise it,
    and ``save_pretrained`` it to ``path``. Returns ``path``; ``base`` is not modified."""
    import copy

    from peft import get_peft_model

    peft_model = get_peft_model(copy.deepcopy(base), config, adapter_name=adapter_name)
    randomize_adapter(peft_model, seed=seed)
    path = Path(path)
    peft_model.save_pretrained(str(path), save_embedding_layers=False)
    return path / adapter_name if adapter_name != "default" else path


def state_dict_copy(model: Any) -> dict[str, Any]:
    """A detached copy of ``model.state_dict()`` for bit-identity checks."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def state_dicts_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@contextlib.contextmanager
def fresh_plugins(**env: str) -> Iterator[Any]:
    """Forget loaded plugins and the method registry, set environment switches
    (e.g. ``ADAPTERHUB_LOAD_PLUGINS``), yield the plugin manager, then restore everything."""
    import os

    from .plugin import manager, registry

    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    registry.reset()
    try:
        yield manager.pm
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        registry.reset()


@dataclass
class CliResult:
    """What one ``adapterhub`` invocation printed and returned."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(*args: str, env: dict[str, str] | None = None) -> CliResult:
    """Run the real ``adapterhub`` entry point in-process, with ``env`` overrides.

    It goes through :func:`adapterhub.cli.main`, so library errors become ``error: ...`` on stderr
    and the exit code is the one a user's shell would see.
    """
    import click
    from click.testing import CliRunner

    from .cli import main

    @click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                     "help_option_names": []})
    @click.pass_context
    def entry(ctx: click.Context) -> None:
        main(list(ctx.args))

    result = CliRunner().invoke(entry, list(args), env=env, catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)
