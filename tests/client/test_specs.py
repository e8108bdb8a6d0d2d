"""Version specs: PEP 440, pip's ``NAME==1.0.0`` form, and npm/cargo's caret and tilde ranges.

The expected ranges are the ones npm's node-semver and cargo document ("^0.2.3 := >=0.2.3 <0.3.0"),
written out by hand here."""

from __future__ import annotations

import pytest

from adapterhub.client.models import IndexEntry
from adapterhub.client.refs import parse_source
from adapterhub.client.resolve import select_version
from adapterhub.client.specs import expand_spec
from adapterhub.errors import UsageError


@pytest.mark.parametrize(("spec", "expected"), [
    ("^1.2.3", ">=1.2.3,<2.0.0"), ("^1.2", ">=1.2,<2.0.0"), ("^1", ">=1,<2.0.0"),
    ("^0.2.3", ">=0.2.3,<0.3.0"), ("^0.2", ">=0.2,<0.3.0"), ("^0.0.3", ">=0.0.3,<0.0.4"),
    ("^0.0", ">=0.0,<0.1.0"), ("^0", ">=0,<1.0.0"),
    ("~1.2.3", ">=1.2.3,<1.3.0"), ("~1.2", ">=1.2,<1.3.0"), ("~1", ">=1,<2.0.0"), ("~0.2.3", ">=0.2.3,<0.3.0"),
    ("^1.2,!=1.4.0", ">=1.2,<2.0.0,!=1.4.0"), ("^1.2.3rc1", ">=1.2.3rc1,<2.0.0"),
    # PEP 440 passes through untouched, ~= included
    ("~=1.4", "~=1.4"), (">=1,<2", ">=1,<2"), ("==1.0.0", "==1.0.0"),
])
def test_caret_and_tilde_ranges(spec, expected):
    assert expand_spec(spec) == expected


@pytest.mark.parametrize("spec", ["^x", "~1.x", "^1!2.0"])
def test_bad_ranges_are_usage_errors(spec):
    with pytest.raises(UsageError) as err:
        expand_spec(spec)
    assert "name@^1.2" in err.value.hint


def _entry(*versions, yanked=()):
    source = {"type": "hf", "repo_id": "a/b", "tag": None, "revision": "a" * 40}
    files = [{"path": "adapter_config.json", "size": 2, "sha256": "b" * 64}]
    return IndexEntry.from_dict({
        "schema_version": 1, "name": "ns/x", "namespace": "ns", "task": "t", "method": "lora", "license": None,
        "description": "", "tags": [], "base_model": {"repo_id": "o/m", "revision": None, "model_type": "bert"},
        "versions": {v: {"source": source, "files": files, **({"yanked": True} if v in yanked else {})}
                     for v in versions}})


@pytest.mark.parametrize(("spec", "expected"), [
    ("^1", "1.9.0"), ("^1.2", "1.9.0"), ("~1.2", "1.2.5"), ("~1.2.3", "1.2.5"), ("^0.2", "0.2.9"),
    ("^0.0.1", "0.0.1"), ("^2", "2.1.0"), ("~1", "1.9.0"), ("^1,!=1.9.0", "1.2.5"),
])
def test_ranges_select_the_newest_match(spec, expected):
    entry = _entry("0.0.1", "0.0.2", "0.2.1", "0.2.9", "0.3.0", "1.2.3", "1.2.5", "1.9.0", "2.0.0rc1", "2.1.0",
                   "3.0.0", yanked=("3.0.0",))
    assert select_version(entry, spec, requested=f"ns/x@{spec}") == expected


def test_an_upper_bound_excludes_the_next_majors_pre_releases():
    assert select_version(_entry("1.5.0", "2.0.0rc1"), "^1", pre=True) == "1.5.0"


@pytest.mark.parametrize(("text", "name", "spec"), [
    ("sentiment/minilm-vader==1.0.0", "sentiment/minilm-vader", "==1.0.0"),
    ("minilm-vader>=1,<2", "minilm-vader", ">=1,<2"),
    ("ns/x~=1.4", "ns/x", "~=1.4"),
    ("ns/x@^1", "ns/x", "^1"),
    ("ns/x", "ns/x", None),
])
def test_pip_style_and_at_style_requests(text, name, spec):
    ref = parse_source(text)
    assert (ref.kind, ref.name, ref.spec) == ("name", name, spec)
