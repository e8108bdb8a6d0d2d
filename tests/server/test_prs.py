"""Discussions and pull requests (:mod:`adapterhub.server.prs`) through the real client: opening a PR
with ``create_pr``, ``refs/pr/N`` revisions, pushing, commenting, merging and closing, with the
permissions the Hub applies (anyone signed in who sees the repo opens PRs and comments; the
author or a writer pushes and renames; only writers merge)."""

from __future__ import annotations

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

pytestmark = pytest.mark.usefixtures("no_xet")


def _status(exc_info) -> int:
    return exc_info.value.response.status_code


def test_a_pull_request_from_a_user_who_cannot_write(hub, alice, bob, carol, repo_name, cache_dir):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    base = alice.upload_file(path_or_fileobj=b"v1", path_in_repo="adapter_config.json", repo_id=repo_id)
    with pytest.raises(HfHubHTTPError) as direct:
        bob.upload_file(path_or_fileobj=b"v2", path_in_repo="adapter_config.json", repo_id=repo_id)
    assert _status(direct) == 403

    info = bob.create_commit(
        repo_id,
        [CommitOperationAdd("adapter_config.json", b"v2"), CommitOperationAdd("weights.bin", b"w" * 100)],
        commit_message="Better config",
        commit_description="Tuned on more data.",
        create_pr=True,
    )
    assert (info.pr_num, info.pr_revision) == (1, "refs/pr/1")
    assert info.pr_url == f"{hub.url}/{repo_id}/discussions/1"
    assert alice.model_info(repo_id).sha == base.oid  # main did not move
    path = hf_hub_download(repo_id, "weights.bin", revision="refs/pr/1", endpoint=hub.url, cache_dir=cache_dir)
    assert open(path, "rb").read() == b"w" * 100
    assert [c.title for c in alice.list_repo_commits(repo_id, revision="refs/pr/1")][:1] == ["Better config"]

    pr = alice.get_discussion_details(repo_id, 1)
    assert (pr.is_pull_request, pr.author, pr.status, pr.title) == (True, "bob", "open", "Better config")
    assert pr.target_branch == "refs/heads/main" and pr.merge_commit_oid is None
    assert pr.events[0].content == "Tuned on more data." and pr.events[1].type == "commit"
    assert "-v1" in pr.diff and "+v2" in pr.diff and "Binary files a/weights.bin" not in pr.diff
    refs = alice.list_repo_refs(repo_id, include_pull_requests=True)
    assert [(r.ref, r.target_commit) for r in refs.pull_requests] == [("refs/pr/1", info.oid)]

    # The author pushes to the PR; someone else who cannot write may not.
    bob.upload_file(path_or_fileobj=b"readme", path_in_repo="README.md", repo_id=repo_id, revision="refs/pr/1")
    with pytest.raises(HfHubHTTPError) as stranger:
        carol.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id=repo_id, revision="refs/pr/1")
    assert _status(stranger) == 403
    with pytest.raises(HfHubHTTPError) as not_a_writer:
        bob.merge_pull_request(repo_id, 1)
    assert _status(not_a_writer) == 403

    alice.merge_pull_request(repo_id, 1, comment="Thanks!")
    merged = alice.get_discussion_details(repo_id, 1)
    assert merged.status == "merged" and merged.merge_commit_oid == alice.model_info(repo_id).sha
    assert sorted(alice.list_repo_files(repo_id)) == [".gitattributes", "README.md", "adapter_config.json",
                                                      "weights.bin"]
    assert [c.title for c in alice.list_repo_commits(repo_id)][0] == "Better config"
    with pytest.raises(HfHubHTTPError) as closed:  # a merged PR takes no more pushes
        bob.upload_file(path_or_fileobj=b"late", path_in_repo="late", repo_id=repo_id, revision="refs/pr/1")
    assert _status(closed) == 400


def test_merging_refuses_conflicts_and_keeps_other_changes(hub, alice, bob, repo_name, cache_dir):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    alice.create_commit(repo_id, [CommitOperationAdd("a", b"1"), CommitOperationAdd("b", b"1"),
                                  CommitOperationAdd("gone", b"1")], commit_message="base")
    first = bob.create_commit(repo_id, [CommitOperationAdd("a", b"pr")], commit_message="PR a", create_pr=True)
    second = bob.create_commit(repo_id, [CommitOperationAdd("b", b"pr"), CommitOperationDelete("gone")],
                               commit_message="PR b", create_pr=True)
    alice.upload_file(path_or_fileobj=b"main", path_in_repo="a", repo_id=repo_id)  # main changes a
    with pytest.raises(HfHubHTTPError) as conflict:
        alice.merge_pull_request(repo_id, first.pr_num)
    assert _status(conflict) == 409 and "a" in conflict.value.response.json()["filesWithConflicts"]
    assert alice.get_discussion_details(repo_id, first.pr_num).status == "open"
    alice.merge_pull_request(repo_id, second.pr_num)  # b and gone did not change on main
    files = {f.path: f for f in alice.list_repo_tree(repo_id)}
    assert set(files) == {".gitattributes", "a", "b"}
    kept = hf_hub_download(repo_id, "a", endpoint=hub.url, cache_dir=cache_dir)
    assert open(kept, "rb").read() == b"main"


def test_discussions_comments_titles_and_status(hub, alice, bob, carol, anon, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    pr = alice.create_pull_request(repo_id, title=" Draft PR ")
    question = bob.create_discussion(repo_id, title="Which base model?", description="Does it need llama?")
    assert (pr.num, question.num, pr.title) == (1, 2, "Draft PR")
    assert [d.num for d in carol.get_repo_discussions(repo_id)] == [2, 1]
    assert [d.num for d in carol.get_repo_discussions(repo_id, discussion_type="pull_request")] == [1]
    assert [d.num for d in carol.get_repo_discussions(repo_id, author="bob")] == [2]

    reply = carol.comment_discussion(repo_id, 2, "Yes, llama-2-7b.")
    edited = carol.edit_discussion_comment(repo_id, 2, reply.id, "Yes, **llama-2-7b**.")
    assert edited.edited and edited.content == "Yes, **llama-2-7b**."
    with pytest.raises(HfHubHTTPError) as not_hers:
        bob.edit_discussion_comment(repo_id, 2, reply.id, "no")
    assert _status(not_hers) == 403
    hidden = alice.hide_discussion_comment(repo_id, 2, reply.id)  # writers hide comments
    assert hidden.hidden
    with pytest.raises(HfHubHTTPError) as rename:
        carol.rename_discussion(repo_id, 2, "Mine now")  # neither its author nor a writer
    assert _status(rename) == 403
    assert bob.rename_discussion(repo_id, 2, "Which base?").new_title == "Which base?"
    assert alice.change_discussion_status(repo_id, 2, "closed", comment="Answered.").new_status == "closed"
    assert [d.num for d in carol.get_repo_discussions(repo_id, discussion_status="open")] == [1]
    details = carol.get_discussion_details(repo_id, 2)
    assert [e.type for e in details.events] == ["comment", "comment", "title-change", "comment", "status-change"]

    with pytest.raises(HfHubHTTPError) as anonymous:
        anon.create_discussion(repo_id, title="spam")
    assert _status(anonymous) == 401


def test_pull_requests_need_a_branch_and_a_visible_repo(hub, alice, bob, repo_name):
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id)
    alice.create_branch(repo_id, branch="dev")
    head = alice.model_info(repo_id).sha
    def ops():
        return [CommitOperationAdd("f", b"x")]

    assert bob.create_commit(repo_id, ops(), commit_message="to dev", revision="dev", create_pr=True).pr_num == 1
    for revision in (head, "missing-branch"):
        with pytest.raises(RevisionNotFoundError):
            bob.create_commit(repo_id, ops(), commit_message="x", revision=revision, create_pr=True)
    alice.update_repo_settings(repo_id, private=True)
    with pytest.raises(RepositoryNotFoundError):
        bob.create_commit(repo_id, ops(), commit_message="x", create_pr=True)
    with pytest.raises(RepositoryNotFoundError):
        bob.get_repo_discussions(repo_id).__next__()
