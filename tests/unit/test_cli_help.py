"""Every command explains itself with an example, and shell completion knows them all."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ldapsrv.cli import build_parser
from ldapsrv.cli_help import bash_completion, subcommands, zsh_completion


def test_every_command_and_subcommand_help_carries_an_example() -> None:
    parser = build_parser()
    missing = [path for path, sub in subcommands(parser) if "example:\n  ldapsrv" not in
               sub.format_help() and "example:\n  slapcat" not in sub.format_help()]  # fmt: skip
    assert missing == []
    assert "examples:\n  ldapsrv" in parser.format_help()


def _complete(script: str, *words: str) -> list[str]:
    line = " ".join(["ldapsrv", *words])
    program = (
        f"{script}\nCOMP_WORDS=(ldapsrv {' '.join(words)}); COMP_CWORD={len(words)}; "
        f'COMP_LINE="{line}"; _ldapsrv; printf "%s\\n" "${{COMPREPLY[@]}}"'
    )
    result = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, timeout=30, check=True
    )
    return result.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not installed")
def test_bash_completion_is_valid_and_completes_every_command() -> None:
    parser = build_parser()
    script = bash_completion(parser)
    subprocess.run(["bash", "-n"], input=script, text=True, timeout=30, check=True)
    top = {path for path, _ in subcommands(parser) if " " not in path}
    assert top <= set(_complete(script, ""))
    assert {"import", "import-csv"} == set(_complete(script, "imp"))
    assert "add-member" in _complete(script, "group", "add")
    assert "--dry-run" in _complete(script, "import", "--dr")
    assert "--with-password-hashes" in _complete(script, "export", "--with")
    for path, _ in subcommands(parser):
        assert f'"{path}")' in script
    assert zsh_completion(parser).startswith("#compdef ldapsrv")
