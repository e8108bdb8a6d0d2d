"""Reproducible releases: ``created`` from SOURCE_DATE_EPOCH, so the same push gives the same bytes."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

from adapterhub.demo.tasks import DEMO_RELEASE_EPOCH, SENTIMENT, adapter_dir
from adapterhub.errors import PublishError
from adapterhub.publish import push_directory
from adapterhub.publish.manifest import release_time


def _iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_created_comes_from_source_date_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert release_time() == "2023-11-14T22:13:20Z"


def test_created_is_now_without_source_date_epoch(monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    created = dt.datetime.strptime(release_time(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 60


@pytest.mark.parametrize("value", ["yesterday", "-5", "1.5"])
def test_a_bad_source_date_epoch_is_refused_with_the_fix(monkeypatch, value):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    with pytest.raises(PublishError, match="SOURCE_DATE_EPOCH") as info:
        push_directory(adapter_dir(SENTIMENT), repo_id="me/x", version="1.0.0", check=False, dry_run=True)
    assert "seconds since 1970" in str(info.value)


def test_same_push_stages_identical_manifests(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(DEMO_RELEASE_EPOCH))
    kwargs = dict(repo_id="adapterhub-demo/x", version="1.0.0", task="sentiment-analysis", check=False, dry_run=True)
    first = push_directory(adapter_dir(SENTIMENT), **kwargs)
    second = push_directory(adapter_dir(SENTIMENT), **kwargs)
    assert first.manifest["created"] == _iso(DEMO_RELEASE_EPOCH)
    assert json.dumps(first.manifest, sort_keys=True) == json.dumps(second.manifest, sort_keys=True)
    assert [f.to_dict() for f in first.files] == [f.to_dict() for f in second.files]  # card included


def test_push_help_documents_source_date_epoch():
    proc = subprocess.run([sys.executable, "-m", "adapterhub", "push", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    assert "SOURCE_DATE_EPOCH" in proc.stdout
