"""The README's and docs' snippets still work: a doc that names a flag, a command, a
script or an import the code no longer has fails here instead of misleading a reader.

Each ``choreo ...`` line of a shell or console block is parsed by the real command line
(nothing is run); each ``choreo ...`` the prose names must be a command with those
flags; every Python block compiles and its project imports resolve; every script a
command runs exists.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import shlex
from collections.abc import Iterator

import pytest

from choreo.cli.main import build_parser
from choreo.stack.settings import REPO_ROOT

DOCS = sorted([REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
"""A fence's language, then anything (docs/library.md names a file there), then its text."""
INLINE = re.compile(r"(?<!`)`(choreo [^`]+)`(?!`)")
BARE_FOLDERS = ("outbox", "services", "schemas", "stack", "cli", "testkit", "console",
                "chaos", "bench", "connectors")
"""Folders of the repository that are importable only as ``choreo.<folder>``."""


def blocks(language: set[str]) -> Iterator[tuple[str, str]]:
    for doc in DOCS:
        for found in FENCE.finditer(doc.read_text()):
            if found.group(1) in language:
                yield doc.relative_to(REPO_ROOT).as_posix(), found.group(2)


def command_lines() -> Iterator[tuple[str, list[str]]]:
    """(where, argv after ``choreo``) of every command line in a shell or console block."""
    for where, text in blocks({"bash", "console", "sh", ""}):
        for line in text.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("choreo "):
                yield where, shlex.split(line, comments=True)[1:]


def command_mentions() -> Iterator[tuple[str, list[str]]]:
    """(where, words after ``choreo``) of every inline ``choreo ...`` span in the prose."""
    for doc in DOCS:
        for span in INLINE.findall(doc.read_text()):
            yield doc.relative_to(REPO_ROOT).as_posix(), shlex.split(span)[1:]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((action.choices for action in parser._actions  # noqa: SLF001
                 if isinstance(action, argparse._SubParsersAction)), {})  # noqa: SLF001


def subcommand_of(parser: argparse.ArgumentParser, words: list[str]
                  ) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser, list[str]]:
    """The deepest subcommand ``words`` name, the parser it belongs to, and the words left
    after it."""
    parent = parser
    for index, word in enumerate(words):
        if word not in subcommands(parser):
            return parser, parent, words[index:]
        parent, parser = parser, subcommands(parser)[word]
    return parser, parent, []


COMMANDS = list(command_lines())
MENTIONS = list(command_mentions())


def test_the_docs_show_commands_at_all() -> None:
    assert len(COMMANDS) >= 10 and len(MENTIONS) >= 30, \
        "the snippet scan found almost nothing: are FENCE and INLINE still right?"


@pytest.mark.parametrize(("where", "argv"), COMMANDS,
                         ids=[f"{w}:{' '.join(a)}" for w, a in COMMANDS])
def test_every_documented_choreo_command_parses(where: str, argv: list[str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as exit_:
        if exit_.code != 0:  # --help exits 0 after printing
            pytest.fail(f"{where}: choreo {' '.join(argv)}: {capsys.readouterr().err}")


@pytest.mark.parametrize(("where", "words"), MENTIONS,
                         ids=[f"{w}:{' '.join(a)}" for w, a in MENTIONS])
def test_every_command_the_prose_names_exists_with_its_flags(where: str,
                                                             words: list[str]) -> None:
    """Prose names commands with placeholders (``choreo trace ORDER_ID``, ``[--sql]``):
    the subcommand must exist and every ``--flag`` must be one of its options."""
    command, parent, rest = subcommand_of(build_parser(), words)
    alternatives = {w for i, w in enumerate(rest[1:], 1) if rest[i - 1] == "/"
                    and w.isidentifier() and w.islower()}  # ``list / show / replay``
    assert alternatives <= set(subcommands(parent)), \
        f"{where}: {parent.prog} has no {sorted(alternatives - set(subcommands(parent)))}"
    named = [word for word in rest if word.isidentifier() and word.islower()
             and word not in alternatives]
    assert not (subcommands(command) and named), \
        f"{where}: {command.prog} has no subcommand {named[0]}"
    options = {option for action in command._actions  # noqa: SLF001
               for option in action.option_strings}
    if any(action.nargs == argparse.REMAINDER for action in command._actions):  # noqa: SLF001
        return  # ``choreo kafka TOOL ...`` hands its flags to the tool
    flags = {word.strip("[]").split("=")[0] for word in rest if word.lstrip("[").startswith("--")}
    assert flags <= options, f"{where}: {command.prog} has no {sorted(flags - options)}"


def project_imports(tree: ast.Module) -> Iterator[tuple[str, str | None]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module \
                and node.module.split(".")[0] in ("choreo", *BARE_FOLDERS):
            yield from ((node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names
                        if alias.name.split(".")[0] in ("choreo", *BARE_FOLDERS))


PYTHON = list(blocks({"python"}))


@pytest.mark.parametrize(("where", "source"), PYTHON, ids=[w for w, _ in PYTHON])
def test_every_python_snippet_compiles_and_imports_what_exists(where: str, source: str) -> None:
    tree = ast.parse(source, filename=where)
    for module, name in project_imports(tree):
        assert module.split(".")[0] == "choreo", f"{where}: {module} is choreo.{module}"
        imported = importlib.import_module(module)
        assert name is None or hasattr(imported, name), f"{where}: {module} has no {name}"


def test_every_script_the_docs_run_exists() -> None:
    scripts = {match for doc in DOCS
               for match in re.findall(r"bash ((?:infra|\.ci)/[\w./-]+)", doc.read_text())}
    assert scripts, "the README names its two set-up commands"
    assert not {s for s in scripts if not (REPO_ROOT / s).is_file()}
