"""The model card's usage section: how to load a release in adapterhub, and, for an AdapterHub-format
release, in the `adapters` library (whose default load_adapter reads pytorch_adapter.bin)."""

from __future__ import annotations

from adapterhub.publish.card import adapters_load_call, render_card


def _manifest(fmt: str, files: list[str]) -> dict:
    return {"name": "alice/tiny", "version": "1.2.0", "method": "bottleneck", "format": fmt,
            "plugin": {"name": "adapterhub", "version": "0"}, "base_model": {"repo_id": "org/base"},
            "files": [{"path": p, "size": 1, "sha256": "0" * 64} for p in files]}


def test_adapters_load_call_names_the_release_tag_and_safetensors():
    assert adapters_load_call("alice/tiny", "1.2.0") == \
        'model.load_adapter("alice/tiny", version="v1.2.0", use_safetensors=True)'


def test_adapters_format_card_shows_the_adapters_library_call():
    card = render_card(_manifest("adapters", ["adapter_config.json", "adapter.safetensors"]), "alice/tiny")
    assert 'model = AutoModel.from_pretrained("org/base")\nadapters.init(model)' in card
    assert f"name = {adapters_load_call('alice/tiny', '1.2.0')}\nmodel.set_active_adapters(name)" in card
    assert "AutoAdapterModel" not in card


def test_adapters_format_card_with_a_head_uses_the_flex_head_class():
    files = ["adapter_config.json", "adapter.safetensors", "head_config.json", "model_head.safetensors"]
    card = render_card(_manifest("adapters", files), "alice/tiny")
    assert "from adapters import AutoAdapterModel" in card
    assert 'model = AutoAdapterModel.from_pretrained("org/base")' in card
    assert "adapters.init(model)" not in card and "use_safetensors=True" in card


def test_peft_format_card_has_no_adapters_library_section():
    card = render_card(_manifest("peft", ["adapter_config.json", "adapter_model.safetensors"]), "alice/tiny")
    assert "use_safetensors" not in card and "adapters library" not in card
