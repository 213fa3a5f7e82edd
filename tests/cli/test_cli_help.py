"""The command line explains itself: ``--version``, a description for every subcommand and
help for every argument, so ``choreo X --help`` is enough to use X."""

from __future__ import annotations

import argparse
import importlib.metadata

import pytest

from choreo.cli.main import build_parser
from choreo.cli.main import main as choreo


def undocumented(parser: argparse.ArgumentParser, path: str = "choreo") -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            described = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                if not described.get(name):
                    found.append(f"{path} {name}: no description")
                found += undocumented(sub, f"{path} {name}")
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)) \
                and not action.help:
            found.append(f"{path} {'/'.join(action.option_strings) or action.dest}: no help")
    return found


def test_every_subcommand_and_argument_says_what_it_is() -> None:
    assert undocumented(build_parser()) == []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        choreo(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"choreo {importlib.metadata.version('choreo')}"
