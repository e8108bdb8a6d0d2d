"""Credentials in a Hub endpoint or index URL (http://user:secret@host) never reach error messages."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from adapterhub.client import Client
from adapterhub.settings import get_settings
from adapterhub.errors import AdapterHubError

SECRET = "s3cret-pass-7f2c"


def _with_userinfo(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"deploy:{SECRET}@{parts.netloc}").geturl()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _error_text(exc: AdapterHubError) -> str:
    return f"{exc} {exc.message} {exc.hint or ''} {getattr(exc, 'problems', '')}"


def test_endpoint_credentials_are_not_in_a_not_found_error(hub, tmp_path):
    settings = get_settings(home=tmp_path / "home", endpoint=_with_userinfo(hub.url))
    with pytest.raises(AdapterHubError) as info:
        Client(settings).plan(["alice/no-such-repo"])
    text = _error_text(info.value)
    assert "not found" in text and hub.url in text  # the message still says where it looked
    assert SECRET not in text and "deploy:" not in text


def test_endpoint_credentials_are_not_in_a_connection_error(tmp_path):
    settings = get_settings(home=tmp_path / "home", endpoint=_with_userinfo(_closed_port_url()))
    with pytest.raises(AdapterHubError) as info:
        Client(settings).plan(["alice/some-repo"])
    assert SECRET not in _error_text(info.value)


def test_index_url_credentials_are_not_in_a_fetch_error(hub, tmp_path):
    from adapterhub.client.index import load_index

    for base in (hub.url, _closed_port_url()):
        url = _with_userinfo(base) + "/no/such/index.json"
        settings = get_settings(home=tmp_path / "home", index=url)
        with pytest.raises(AdapterHubError) as info:
            load_index(settings)
        text = _error_text(info.value)
        assert "index" in text and SECRET not in text and "deploy:" not in text


def test_scrub_masks_token_and_userinfo():
    from adapterhub.settings import scrub_secrets

    text = f"GET http://deploy:{SECRET}@h:1/x failed; Authorization: Bearer tok-abcdef; port {SECRET}@h"
    out = scrub_secrets(text, urls=[f"http://deploy:{SECRET}@h:1"], token="tok-abcdef")
    assert SECRET not in out and "tok-abcdef" not in out and "http://h:1/x" in out


def test_push_failure_is_a_publish_error_without_credentials(hub, tmp_path):
    from peft import LoraConfig, get_peft_model

    from adapterhub.errors import PublishError
    from adapterhub.publish.push import push_directory
    from adapterhub.testing import tiny_bert

    adapter = tmp_path / "adapter"
    get_peft_model(tiny_bert(1), LoraConfig(r=4, target_modules=["query", "value"])).save_pretrained(str(adapter))
    wrong_token = "tok-not-a-valid-token-9d1e"
    with pytest.raises(PublishError) as info:  # not huggingface_hub's HTTP error, which a CLI prints raw
        push_directory(adapter, repo_id="alice/secret-push", version="0.1.0", task="sentiment-analysis",
                       base_model="alice/tiny-bert", check=False, endpoint=_with_userinfo(hub.url),
                       token=wrong_token, entry_out=tmp_path / "entry.json")
    text = _error_text(info.value)
    assert "401" in text and SECRET not in text and "deploy:" not in text and wrong_token not in text
