"""Released schema versions are immutable: compare the working tree with a git ref.

Every event carries its writer schema's fingerprint, and events stay in their topics for
the whole retention. A released ``.v<N>.avsc`` edited in place changes what consumers that
already hold it decode, so a change must be a new version instead. The comparison uses the
parsing canonical form, the exact input of the fingerprint, so doc fixes and JSON
reformatting stay allowed. The canonical form leaves out defaults and aliases too, so an
in-place edit of only those is not caught here.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import fastavro
from fastavro.schema import to_parsing_canonical_form

DEFAULT_REF = "HEAD"


class GitRefError(ValueError):
    """An explicitly requested ``--git-ref`` that does not name a commit."""


@dataclass
class HistoryReport:
    compared: int = 0
    problems: list[str] = field(default_factory=list)
    notice: str | None = None
    """Why the check was skipped, when it was."""


def check_released(root: Path, ref: str | None) -> HistoryReport:
    try:
        toplevel = _git(root, "rev-parse", "--show-toplevel")
    except FileNotFoundError:
        return HistoryReport(notice="released-version check skipped, git is not installed")
    if toplevel.returncode != 0:
        return HistoryReport(notice=f"released-version check skipped, no git repository at "
                                    f"{root} ({toplevel.stderr.strip()})")
    repo = Path(toplevel.stdout.strip())
    commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref or DEFAULT_REF}^{{commit}}")
    if commit.returncode != 0:
        if ref is not None:
            raise GitRefError(f"--git-ref {ref!r} does not name a commit in {repo}")
        return HistoryReport(notice=f"released-version check skipped, {repo} has no commits yet")
    return _compare(root, repo, commit.stdout.strip(), ref or DEFAULT_REF)


def _compare(root: Path, repo: Path, commit: str, ref: str) -> HistoryReport:
    prefix = PurePosixPath(root.resolve().relative_to(repo.resolve()).as_posix())
    listing = _git(repo, "ls-tree", "-r", "-z", "--name-only", commit, "--", str(prefix),
                   check=True).stdout
    report = HistoryReport()
    for name in filter(None, listing.split("\0")):
        file = PurePosixPath(name).relative_to(prefix)
        if len(file.parts) != 2 or file.suffix != ".avsc":  # the catalog's layout only
            continue
        report.compared += 1
        current = root / file
        if not current.is_file():
            report.problems.append(f"{file}: released at {ref} but deleted; events written with "
                                   "it may still be in the topic")
            continue
        released = _git(repo, "cat-file", "blob", f"{commit}:{name}", check=True).stdout
        if _canonical(released) != _canonical(current.read_text()):
            report.problems.append(f"{file}: released at {ref} but edited in place (its parsing "
                                   "canonical form changed); restore it and add the change as "
                                   "a new version")
    return report


def _canonical(text: str) -> str:
    """The parsing canonical form, or the text itself when it does not parse (reported
    elsewhere), so an unparseable file still counts as changed unless it is byte-identical."""
    try:
        return to_parsing_canonical_form(fastavro.parse_schema(json.loads(text), _write_hint=False))
    except Exception:  # fastavro raises several unrelated types for bad schemas
        return text


def _git(cwd: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                          check=check)
