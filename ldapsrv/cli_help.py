"""Examples for every command's ``--help``, and shell completion, both generated
from the one argparse tree ``ldapsrv.cli.build_parser`` builds.

``add_examples`` walks the tree and gives each (sub)command an epilog from
``EXAMPLES`` (a test checks that none is missing). ``bash_completion`` and
``zsh_completion`` print scripts that complete command words and options from
the same tree, so they cannot fall behind the commands.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

EXAMPLES: dict[str, str] = {
    "serve": "ldapsrv serve --config /etc/ldapsrv/ldapsrv.toml",
    "db": "ldapsrv db upgrade --config /etc/ldapsrv/ldapsrv.toml",
    "db upgrade": "ldapsrv db upgrade --config /etc/ldapsrv/ldapsrv.toml",
    "db sample": "ldapsrv db sample --data-dir ./data",
    "db status": "ldapsrv db status --config /etc/ldapsrv/ldapsrv.toml",
    "db backup": "ldapsrv db backup /var/backups/ldapsrv-$(date +%F).db "
    "--config /etc/ldapsrv/ldapsrv.toml",
    "db restore": "ldapsrv db restore /var/backups/ldapsrv-2026-11-29.db "
    "--config /etc/ldapsrv/ldapsrv.toml",
    "import": "slapcat -n 1 > old.ldif && ldapsrv import old.ldif --dry-run && "
    "ldapsrv import old.ldif",
    "import-csv": "ldapsrv import-csv people.csv --dry-run   # columns: uid,cn,mail,groups,...",
    "export": "ldapsrv export -o directory.ldif   # --with-password-hashes to include secrets",
    "completion": "ldapsrv completion bash > /etc/bash_completion.d/ldapsrv",
    "user": "ldapsrv user list",
    "user add": "ldapsrv user add alice --password-stdin --mail alice@example.org "
    '--display-name "Alice Liddell" < password.txt',
    "user list": "ldapsrv user list --json",
    "user show": "ldapsrv user show alice",
    "user delete": "ldapsrv user delete alice",
    "user set-password": "ldapsrv user set-password alice --password-stdin < new-password.txt",
    "user disable": "ldapsrv user disable alice",
    "user enable": "ldapsrv user enable alice",
    "group": "ldapsrv group list",
    "group add": 'ldapsrv group add developers --description "Software people"',
    "group list": "ldapsrv group list --json",
    "group show": "ldapsrv group show developers",
    "group delete": "ldapsrv group delete developers",
    "group add-member": "ldapsrv group add-member developers alice",
    "group remove-member": "ldapsrv group remove-member developers alice",
    "service-account": "ldapsrv service-account list",
    "service-account create": "ldapsrv service-account create nas-office --create-group "
    "--no-expiring",
    "service-account list": "ldapsrv service-account list --json",
    "service-account show": "ldapsrv service-account show nas-office",
    "service-account delete": "ldapsrv service-account delete nas-office",
    "token": "ldapsrv token list --user nas-office",
    "token create": "ldapsrv token create --identifier alice-mail --user alice",
    "token list": "ldapsrv token list --user alice",
    "token show": "ldapsrv token show alice-mail",
    "token view": "ldapsrv token view nas-office",
    "token delete": "ldapsrv token delete alice-mail",
    "token rotate": "ldapsrv token rotate nas-office",
    "permission": "ldapsrv permission list",
    "permission grant": "ldapsrv permission grant search_full_directory --group ldap-readers",
    "permission revoke": "ldapsrv permission revoke search --user nas-office --scope nas-users",
    "permission list": "ldapsrv permission list --user alice",
    "audit": "ldapsrv audit --since 7d",
    "status": "ldapsrv status --json",
    "health": "ldapsrv health --timeout 5",
}


def subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """("user add", its parser) for every command and subcommand, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                for path, deeper in subcommands(sub):
                    yield f"{name} {path}", deeper


def _words(parser: argparse.ArgumentParser) -> list[str]:
    words: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            words.extend(action.choices)
        else:
            words.extend(action.option_strings)
    return words


def add_examples(parser: argparse.ArgumentParser) -> None:
    """Give every (sub)command its example as an epilog, and the top level a few."""
    parser.epilog = (
        "examples:\n  ldapsrv db upgrade --config /etc/ldapsrv/ldapsrv.toml\n"
        "  ldapsrv serve --config /etc/ldapsrv/ldapsrv.toml\n"
        "  ldapsrv user add alice --password-stdin < password.txt\n"
        "  ldapsrv COMMAND --help   (every command has an example)"
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for path, sub in subcommands(parser):
        example = EXAMPLES.get(path)
        if example is not None:
            sub.epilog = f"example:\n  {example}"
            sub.formatter_class = argparse.RawDescriptionHelpFormatter


def bash_completion(parser: argparse.ArgumentParser) -> str:
    """A bash script completing commands, subcommands and options."""
    cases = [f'    "") words="{" ".join(_words(parser))}" ;;']
    for path, sub in subcommands(parser):
        cases.append(f'    "{path}") words="{" ".join(_words(sub))}" ;;')
    body = "\n".join(cases)
    return f"""# bash completion for ldapsrv (generated by `ldapsrv completion bash`)
_ldapsrv() {{
  local cur path="" word i
  cur="${{COMP_WORDS[COMP_CWORD]}}"
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="${{COMP_WORDS[i]}}"
    [[ $word == -* ]] && continue
    case "${{path:+$path }}$word" in
{chr(10).join(f'      "{p}") path="{p}" ;;' for p, _ in subcommands(parser))}
    esac
  done
  local words=""
  case "$path" in
{body}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
  [[ ${{#COMPREPLY[@]}} -eq 0 ]] && COMPREPLY=($(compgen -f -- "$cur"))
  return 0
}}
complete -F _ldapsrv ldapsrv
"""


def zsh_completion(parser: argparse.ArgumentParser) -> str:
    """zsh: the bash script through bashcompinit."""
    return (
        "#compdef ldapsrv\n# zsh completion for ldapsrv (generated by `ldapsrv completion zsh`)\n"
        "autoload -U +X bashcompinit && bashcompinit\n" + bash_completion(parser)
    )
