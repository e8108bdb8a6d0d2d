"""Model cards (:mod:`adapterhub.server.cards`): the client's README check before an upload, the
tags a card gives a repo, and the front matter parser as a unit."""

from __future__ import annotations

import pytest

from adapterhub.server.cards import card_tags, parse_front_matter


@pytest.mark.usefixtures("no_xet")
def test_validate_yaml(hub, alice, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    with pytest.raises(ValueError, match="YAML"):
        alice.upload_file(path_or_fileobj=b"---\ntags: [unclosed\n---\n", path_in_repo="README.md", repo_id=repo_id)
    alice.upload_file(path_or_fileobj=b"---\ntags: [lora]\n---\ncard", path_in_repo="README.md", repo_id=repo_id)
    assert alice.model_info(repo_id).tags == ["lora"]


# --- units ------------------------------------------------------------------------------------


def test_front_matter_is_the_leading_yaml_mapping():
    assert parse_front_matter("---\nlibrary_name: peft\ntags: [lora]\n---\n# Card\n") == {
        "library_name": "peft",
        "tags": ["lora"],
    }
    assert parse_front_matter("# no front matter\n---\na: 1\n---\n") == {}
    assert parse_front_matter("---\n---\nbody") == {}
    assert parse_front_matter("----\na: 1\n---\n") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\ntags: [unclosed\n---\n", "Invalid YAML"),
        ("---\n- a\n- b\n---\n", "must be a YAML mapping"),
        ("---\na: 1\n", "not closed"),
        ("---\na: &x [1]\nb: *x\n---\n", "aliases"),
    ],
)
def test_malformed_front_matter_is_a_value_error(text, message):
    with pytest.raises(ValueError, match=message):
        parse_front_matter(text)


def test_card_tags_add_library_pipeline_and_base_models():
    card = {"tags": ["lora", 7], "library_name": "peft", "pipeline_tag": "lora", "base_model": ["a/b", "c/d"]}
    assert card_tags(card) == ["lora", "7", "peft", "base_model:a/b", "base_model:c/d"]
    assert card_tags({"tags": "one", "base_model": "a/b"}) == ["one", "base_model:a/b"]
    assert card_tags({"tags": [{"nested": 1}], "library_name": 3}) == []
