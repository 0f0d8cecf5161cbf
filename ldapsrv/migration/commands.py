"""``ldapsrv import``, ``import-csv`` and ``export``: straight on the database the
configuration names (like ``db sample``), so they work with or without a server
running; every import is one transaction, audited, and a running server sees
its result on the next search."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ldapsrv.auth.passwords import is_legacy_hash
from ldapsrv.directory.records import AuditEvent
from ldapsrv.errors import DomainError
from ldapsrv.migration.csvfile import parse_csv
from ldapsrv.migration.export import export_entries, export_header
from ldapsrv.migration.ldif import LdifError, parse_ldif
from ldapsrv.migration.mapping import MappingError, map_entries
from ldapsrv.migration.records import Change, ImportBatch
from ldapsrv.store.directory import SqlDirectory
from ldapsrv.store.imports import ImportRefused


def _actor() -> str:
    return f"ldapsrv import (uid={os.getuid()})"


def _summary(changes: list[Change], dry_run: bool) -> str:
    counts = {action: sum(c.action == action for c in changes) for action in ("create", "update")}
    unchanged = sum(c.action == "unchanged" for c in changes)
    verb = "would be" if dry_run else "were"
    if not counts["create"] and not counts["update"]:
        return f"nothing to change ({unchanged} entries already as in the file)"
    return (
        f"{counts['create']} additions and {counts['update']} updates {verb} made, "
        f"{unchanged} entries unchanged" + (" (dry run: nothing written)" if dry_run else "")
    )


def read_batch(path: Path, fmt: str, base_dn: str | None) -> ImportBatch:
    """The file's (``-``: standard input's) people and groups; LdifError,
    MappingError or OSError on bad input."""
    text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    if fmt == "csv":
        return parse_csv(text)
    return map_entries(parse_ldif(text), base_dn)


def run_import(
    directory: SqlDirectory,
    path: Path,
    *,
    fmt: str,
    dry_run: bool,
    base_dn: str | None,
    say: Callable[[str], None],
    verbose: bool = False,
) -> int:
    """Import ``path``; report each change (and unchanged ones when ``verbose``)."""
    try:
        batch = read_batch(path, fmt, base_dn)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"ldapsrv: error: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    except LdifError as exc:
        print(f"ldapsrv: error: {path}: {exc}", file=sys.stderr)
        return 1
    except MappingError as exc:
        _problems(path, exc.problems)
        return 1
    audit = AuditEvent(
        actor=_actor(),
        channel="cli",
        action="directory.import",
        target=f"file {path.name}",
        details=(("format", fmt),),
    )
    try:
        changes = directory.import_directory(
            batch, dry_run=dry_run, keep_password=lambda h: not is_legacy_hash(h), audit=audit
        )
    except ImportRefused as exc:
        _problems(path, exc.problems)
        return 1
    except DomainError as exc:
        print(f"ldapsrv: error: {exc}", file=sys.stderr)
        return 1
    for note in batch.notes:
        say(note)
    for change in changes:
        if verbose or change.action != "unchanged":
            say(change.line())
    say(_summary(changes, dry_run))
    return 0


def _problems(path: Path, problems: list[str]) -> None:
    print(f"ldapsrv: error: {path} was not imported (nothing was written):", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def run_export(
    directory: SqlDirectory, base_dn: str, out: TextIO, *, with_password_hashes: bool
) -> int:
    def stored_hash(name: str) -> str | None:
        credentials = directory.get_credentials(name)
        return None if credentials is None else credentials.password_hash

    out.write(export_header(with_password_hashes))
    records = export_entries(
        base_dn,
        directory.list_users(),
        directory.list_groups(),
        stored_hash if with_password_hashes else None,
    )
    for record in records:
        out.write(record)
    if with_password_hashes:
        directory.record_audit(
            AuditEvent(
                actor=f"ldapsrv export (uid={os.getuid()})",
                channel="cli",
                action="directory.export_password_hashes",
                target="every person",
            )
        )
    return 0
