"""What the local Hub accepts as a name (:mod:`adapterhub.server.names`): a refused name or ref is a
400, a refused file path a 422 (as on the Hub)."""

from __future__ import annotations

import pytest

from adapterhub.server.errors import HubError
from adapterhub.server.names import check_name, check_ref_name, check_repo_path, check_sha256, is_commit_id


@pytest.mark.parametrize("name", ["a", "alice", "my-lora_v1.2", "A9", "x" * 96, "__DUMMY_HUB_USER__", "_a_"])
def test_good_names(name):
    assert check_name(name, "repo name") == name


@pytest.mark.parametrize(
    "name", ["", "-a", ".a", "a.", "a-", "a..b", "a--b", "a/b", "a b", "x.git", "x" * 97, "é"]
)
def test_bad_names_are_400(name):
    with pytest.raises(HubError) as err:
        check_name(name, "repo name")
    assert err.value.status == 400 and "repo name" in err.value.message


@pytest.mark.parametrize(
    "path", ["a.txt", "dir/sub/b.bin", "notes \xe9.txt", ".gitattributes", "a.git", "a\\b", "folder/..\\..\\file"]
)
def test_good_repo_paths(path):
    """Backslashes inside a name are ordinary characters, which the Hub stores too."""
    assert check_repo_path(path) == path


@pytest.mark.parametrize(
    "path",
    ["", "/etc/passwd", "a/../../b", "..", "a//b", "dir/", "./a", "a/./b", ".git/config", "a/.git", "a/.git/x",
     "a\0b", "a\nb", "..\\ddd", "\\share\\x", "C:\\x", "c:x"],
)
def test_unsafe_repo_paths_are_422(path):
    with pytest.raises(HubError) as err:
        check_repo_path(path)
    assert err.value.status == 422


@pytest.mark.parametrize("name", ["main", "v1.0.0", "feature/x", "release-2026"])
def test_good_ref_names(name):
    assert check_ref_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "/x", "-x", "refs/heads/x", "x/", "x.lock", "a..b", "a//b", "a b", "a~1", "a^", "a:b", "a?", "a*",
             "a[b", "a\\b", "a\x7f", "0" * 40]
)
def test_bad_ref_names_are_400(name):
    with pytest.raises(HubError) as err:
        check_ref_name(name)
    assert err.value.status == 400


def test_commit_and_blob_ids():
    assert is_commit_id("0123456789abcdef0123456789abcdef01234567")
    assert not is_commit_id("0123456789ABCDEF0123456789abcdef01234567") and not is_commit_id("main")
    assert check_sha256("ab" * 32) == "ab" * 32
    for bad in ("ab" * 31, "AB" * 32, "ab" * 32 + "0", "../" + "a" * 61):
        with pytest.raises(HubError):
            check_sha256(bad)
