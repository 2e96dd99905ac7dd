"""The README and the docs name the CLI as it is: no missing verb, no verb that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from leadrelay.cli import main

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += all_commands(command, (*prefix, name))
    return found


@pytest.mark.parametrize("path", all_commands(main), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], prog_name="leadrelay")
    assert result.exit_code == 0, result.output
    assert "Usage: leadrelay " + " ".join(path) in result.stdout


def test_the_readme_names_every_verb_and_only_real_ones() -> None:
    section = README.split("## The command", 1)[1].split("\n## ", 1)[0]
    verbs = [re.split(r"(?<!\\)\|", line)[1]  # the first cell; "\|" is a pipe inside it
             for line in section.splitlines() if line.startswith("| `")]
    named = {name for cell in verbs for name in re.findall(r"`([a-z][a-z-]*)[ `]", cell)}
    assert named == set(main.commands)


def test_the_readme_names_every_setting() -> None:
    settings = (ROOT / "src/leadrelay/engine/settings.py").read_text()
    plugins = (ROOT / "src/leadrelay/engine/plugins.py").read_text()
    graph = (ROOT / "src/leadrelay/facebook/graph.py").read_text()
    variables = set(re.findall(r"LEADRELAY_[A-Z_]+", settings + plugins + graph))
    missing = {v for v in variables if f"`{v}`" not in README}
    assert not missing


@pytest.mark.parametrize("doc", ["configuring.md", "operating.md"])
def test_the_docs_use_only_real_verbs(doc: str) -> None:
    text = (ROOT / "docs" / doc).read_text()
    for verb in re.findall(r"leadrelay ([a-z][a-z-]+)", text):
        assert verb in main.commands, f"{doc} names `leadrelay {verb}`"
