"""Fixtures for the runtime tests (helpers live in runtime_support.py)."""

from __future__ import annotations

import warnings

import pytest

warnings.filterwarnings("ignore", message=".*Already found a `peft_config`.*")


@pytest.fixture(scope="module")
def inputs():
    from adapterhub.testing import tiny_inputs

    return tiny_inputs()


@pytest.fixture(scope="module")
def llama_base():
    from adapterhub.testing import tiny_llama

    return tiny_llama(seed=1)
