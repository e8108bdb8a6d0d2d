"""``.gitattributes`` and ``.gitignore`` patterns (:mod:`adapterhub.server.patterns`), checked against
git's own answers where git is installed, and the Hub's LFS rule."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from adapterhub.server.patterns import (
    HUB_LFS_THRESHOLD,
    GitAttributes,
    GitIgnore,
    LfsRule,
    default_gitattributes,
)

IGNORE = "nested/*\n*.log\n!keep.log\n/top.txt\nbuild/\n**/cache/**\ndoc/**/*.tmp\n# comment\n\n"
PATHS = [
    "nested/file.bin", "nested/deep/file.bin", "a/nested/file.bin", "x.log", "dir/y.log", "keep.log", "top.txt",
    "sub/top.txt", "build/out.o", "src/build/out.o", "build", "a/cache/b/c", "cache/x", "doc/a/b/c.tmp",
    "doc/c.tmp", "doc/c.txt", "README.md",
]


def _git_ignored(tmp_path, text, paths):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text(text)
    out = subprocess.run(["git", "-C", str(tmp_path), "check-ignore", "--no-index", "--stdin"], input="\n".join(paths),
                         capture_output=True, text=True)
    return set(out.stdout.split())


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to compare with")
def test_gitignore_agrees_with_git(tmp_path):
    expected = _git_ignored(tmp_path, IGNORE, PATHS)
    ignore = GitIgnore.parse(IGNORE)
    assert {p for p in PATHS if ignore.ignores(p)} == expected
    assert "nested/file.bin" in expected and "keep.log" not in expected  # the comparison means something


def test_gitignore_rules_without_git():
    ignore = GitIgnore.parse(IGNORE)
    assert ignore.ignores("nested/file.bin") and ignore.ignores("dir/y.log") and ignore.ignores("build/out.o")
    assert not ignore.ignores("keep.log") and not ignore.ignores("sub/top.txt") and not ignore.ignores("README.md")


def _git_lfs_attr(tmp_path, text, paths):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitattributes").write_text(text)
    out = subprocess.run(["git", "-C", str(tmp_path), "check-attr", "filter", "--stdin"], input="\n".join(paths),
                         capture_output=True, text=True, check=True)
    return {line.split(": ")[0] for line in out.stdout.splitlines() if line.endswith(": filter: lfs")}


ATTRS_PATHS = [
    "a.safetensors", "dir/a.safetensors", "x.bin", "w.tar.gz", "events.out.tfevents.1", "saved_model/v/x.pb",
    "saved_model/x", "README.md", "a.txt", "img.png", "run.lfs.json", "a.pt", "notes.safetensors.txt",
]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to compare with")
@pytest.mark.parametrize("repo_type", ["models", "datasets"])
def test_default_gitattributes_agree_with_git(tmp_path, repo_type):
    text = default_gitattributes(repo_type).decode()
    expected = _git_lfs_attr(tmp_path, text, ATTRS_PATHS)
    attributes = GitAttributes.parse(text)
    assert {p for p in ATTRS_PATHS if attributes.is_lfs(p)} == expected
    assert ("img.png" in expected) == (repo_type == "datasets") and "a.safetensors" in expected


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to compare with")
def test_later_lines_override_earlier_ones(tmp_path):
    text = "*.bin filter=lfs diff=lfs merge=lfs -text\nsmall/*.bin -filter\nkeep/x.bin !filter\n"
    paths = ["a.bin", "small/a.bin", "keep/x.bin", "small/deeper/a.bin"]
    assert {p for p in paths if GitAttributes.parse(text).is_lfs(p)} == _git_lfs_attr(tmp_path, text, paths)


def test_the_lfs_rule_is_patterns_or_size_but_never_empty_files():
    rule = LfsRule(GitAttributes.parse("*.bin filter=lfs diff=lfs merge=lfs -text\n"))
    assert rule.threshold == HUB_LFS_THRESHOLD == 10 * 1024 * 1024
    assert rule.is_lfs("x.bin", 1) and not rule.is_lfs("x.bin", 0)
    assert not rule.is_lfs("x.txt", HUB_LFS_THRESHOLD - 1) and rule.is_lfs("x.txt", HUB_LFS_THRESHOLD)
    assert LfsRule(GitAttributes.parse(""), threshold=100).is_lfs("x.txt", 100)
