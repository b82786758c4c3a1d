"""Every ``coadv`` command quoted in README.md still parses: LightningCLI commands with ``--print_config`` (nothing
trains), the tools through their own argument parsers, and every ``configs/...`` path they name exists."""

from __future__ import annotations

import re
import shlex

import pytest
from helpers import ROOT

from coadv.cli import TOOLS, cli_main

LIGHTNING = ("fit", "validate", "test", "predict")


def readme_commands() -> list[str]:
    """The ``coadv ...`` lines of README.md's code blocks, continuation lines joined, comments dropped."""
    commands, blocks = [], re.findall(r"```(?:bash)?\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    for block in blocks:
        for command in re.sub(r"\\\n\s*", " ", block).splitlines():
            command = re.split(r"\s+#", command.strip(), maxsplit=1)[0].strip()
            if command.startswith("coadv "):
                commands.append(command)
    return commands


def tool_parses(name: str, argv: list[str]) -> None:
    """A tool's command line through its parser alone (the tools with one), else only its ``--help``."""
    import importlib

    module = importlib.import_module(TOOLS[name][0])
    if hasattr(module, "parse"):
        module.parse(argv)
    else:
        with pytest.raises(SystemExit) as done:
            module.main(["--help"])
        assert done.value.code in (0, None)


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command, capsys):
    words = shlex.split(command)[1:]
    for word in words:
        for path in re.findall(r"(?:^|=)(configs/[\w./-]+\.yaml)$", word):
            assert (ROOT / path).is_file(), f"{command}: {path} does not exist"
    if not words or words[0].startswith("-"):
        return  # coadv --help / --version
    if words[0] in LIGHTNING:
        prints = any(w in ("--help", "--print_config") or w.endswith(".help") for w in words)  # exits by itself
        with pytest.raises(SystemExit) as done:
            cli_main(words if prints else [*words, "--print_config"])
        assert done.value.code in (0, None), capsys.readouterr().err
    else:
        assert words[0] in TOOLS, f"{command}: unknown command {words[0]}"
        tool_parses(words[0], words[1:])
