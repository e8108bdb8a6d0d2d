"""The optional ``AdapterMethod.merge_updates`` hook: a method without it is refused by name, and
``adapterhub export`` names the adapter and the method before anything is written."""

from __future__ import annotations

import pytest

from adapterhub.errors import UnsupportedOperationError
from adapterhub.plugin import AdapterFiles, AdapterMethod, MergeSite, ParamUpdate


class _Minimal(AdapterMethod):
    name = "minimal"
    mergeable = True

    def detect(self, config, files, model=None):
        return False

    def read(self, path, *, allow_pickle=False):
        raise NotImplementedError

    def save(self, adapter, path, *, format=None):
        raise NotImplementedError

    def apply(self, model, name, adapter):
        raise NotImplementedError

    def loaded_names(self, model):
        return set()

    def activate_stack(self, model, names):
        pass

    def remove(self, model, name):
        pass

    def export(self, model, name):
        raise NotImplementedError


def test_merge_updates_is_refused_by_default_naming_the_method():
    with pytest.raises(UnsupportedOperationError, match="'minimal' cannot be merged into a checkpoint without a model"):
        _Minimal().merge_updates(AdapterFiles("minimal", {}, {}))


def test_the_built_in_mergeable_methods_implement_it():
    from adapterhub.plugin import get_methods

    for name, method in get_methods().items():
        if method.fallback:
            # the generic PEFT plugin merges on a model only (PEFT's layers do the maths); its
            # checkpoint merge refuses by name (tests/publish/export covers the refusal)
            continue
        implemented = type(method).merge_updates is not AdapterMethod.merge_updates
        assert implemented == method.mergeable, name


def test_records_are_plain_data():
    update = ParamUpdate("x.weight", lambda current, site: current)
    assert (update.check, update.replaces, update.optional) == (None, False, False)
    site = MergeSite("x.weight", "Linear", None)
    assert update.apply(1.0, site) == 1.0
