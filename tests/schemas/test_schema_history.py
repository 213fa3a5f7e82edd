"""Released versions, i.e. files at the git ref, must not be edited in place, in a temp repo."""

from __future__ import annotations

import json

import pytest
from schema_tree import V1, V2, SchemaTree, fixture_definition, git

EDITED = ("error: shipping/ParcelShipped.v1.avsc: released at {ref} but edited in place (its "
          "parsing canonical form changed); restore it and add the change as a new version")


def release(tree: SchemaTree, message: str = "release") -> None:
    """Commit the tree in a repository whose top is the schema root's parent."""
    repo = tree.root.parent
    if not (repo / ".git").exists():
        git(repo, "init", "--quiet")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", message)


def edit_v1(tree: SchemaTree) -> None:
    v1 = fixture_definition("ParcelShipped.v1.avsc")
    v1["fields"][2]["type"] = "long"  # weight_grams, in place
    tree.add(V1, v1)


def test_unchanged_released_versions_and_a_new_version_pass(tree: SchemaTree) -> None:
    release(tree.parcel())
    tree.parcel("optional_field")

    code, out = tree.check()

    assert code == 0, out
    assert "released versions: 1 compared with HEAD" in out


def test_a_released_version_edited_in_place_fails_naming_the_file(tree: SchemaTree) -> None:
    release(tree.parcel())
    edit_v1(tree)

    code, out = tree.check()

    assert code == 1
    assert out.splitlines()[-2:] == [EDITED.format(ref="HEAD"),
                                     "schemas check FAILED: 1 problem"]


def test_doc_fixes_and_reformatting_are_not_edits(tree: SchemaTree) -> None:
    release(tree.parcel())
    v1 = fixture_definition("ParcelShipped.v1.avsc")
    v1["doc"] = "A carrier picked up the parcel of an order (clearer wording)."
    (tree.root / V1).write_text(json.dumps(v1, separators=(",", ":")))

    code, out = tree.check()

    assert code == 0, out


def test_deleting_a_released_version_fails(tree: SchemaTree) -> None:
    release(tree.parcel("optional_field"))
    (tree.root / V2).unlink()

    code, out = tree.check()

    assert code == 1
    assert ("error: shipping/ParcelShipped.v2.avsc: released at HEAD but deleted; events "
            "written with it may still be in the topic") in out


def test_an_older_ref_catches_an_edit_already_committed_on_a_branch(tree: SchemaTree) -> None:
    # CI compares a branch with its base: the edit is committed, HEAD alone would not see it.
    release(tree.parcel())
    edit_v1(tree)
    release(tree, "edit v1 in place")

    assert tree.check()[0] == 0
    code, out = tree.check(git_ref="HEAD~1")

    assert code == 1
    assert EDITED.format(ref="HEAD~1") in out


def test_an_unknown_git_ref_cannot_be_checked(tree: SchemaTree) -> None:
    release(tree.parcel())

    code, out = tree.check(git_ref="no-such-branch")

    assert code == 2
    assert out == (f"schemas check: --git-ref 'no-such-branch' does not name a commit in "
                   f"{tree.root.parent}\n")


def test_a_schema_root_at_the_top_of_its_repository(tree: SchemaTree) -> None:
    git(tree.root, "init", "--quiet")
    tree.parcel()
    git(tree.root, "add", "--all")
    git(tree.root, "commit", "--quiet", "--message", "release")
    edit_v1(tree)

    code, out = tree.check()

    assert code == 1
    assert EDITED.format(ref="HEAD") in out


def test_outside_a_repository_the_check_is_skipped_with_a_notice(
    tree: SchemaTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tree.root.parent))  # whatever /tmp is in
    tree.parcel()

    code, out = tree.check()

    assert code == 0, out
    assert (f"notice: released-version check skipped, no git repository at {tree.root} "
            "(fatal: not a git repository") in out


def test_in_a_repository_without_commits_the_check_is_skipped_with_a_notice(
    tree: SchemaTree,
) -> None:
    git(tree.root.parent, "init", "--quiet")
    tree.parcel()

    code, out = tree.check()

    assert code == 0, out
    assert f"notice: released-version check skipped, {tree.root.parent} has no commits yet" in out
