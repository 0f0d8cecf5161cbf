"""Imports into the store, on every backend: one transaction, a dry run that
writes nothing, idempotent re-runs, imported numbers kept and reserved."""

from __future__ import annotations

import pytest

from ldapsrv.auth.passwords import hash_password, is_legacy_hash
from ldapsrv.migration.records import ImportBatch, ImportedGroup, ImportedPerson
from ldapsrv.store.directory import NewUser, SqlDirectory
from ldapsrv.store.imports import ImportRefused

SSHA = "{SSHA}qh6gZ8IO1fj3yWgCHw5RcgiCGytZFS5o"


def _batch(**person: object) -> ImportBatch:
    fields: dict[str, object] = {"name": "alice", "source": "line 3", "uid_number": 10005,
                                 "gid_number": 20005, "mail": "alice@example.org",
                                 "password_hash": SSHA}  # fmt: skip
    fields.update(person)
    return ImportBatch(
        people=[ImportedPerson(**fields)],  # type: ignore[arg-type]
        groups=[ImportedGroup("staff", "line 9", gid_number=20005, members=("alice", "ghost"))],
    )


def _apply(directory: SqlDirectory, batch: ImportBatch, dry_run: bool = False) -> list[str]:
    changes = directory.import_directory(
        batch, dry_run=dry_run, keep_password=lambda h: not is_legacy_hash(h)
    )
    return [c.line() for c in changes]


def test_a_dry_run_reports_the_plan_and_writes_nothing(directory: SqlDirectory) -> None:
    lines = _apply(directory, _batch(), dry_run=True)
    assert "create    person alice: password (SSHA)" in lines
    assert "create    group staff: gidNumber 20005" in lines
    assert "create    membership staff/alice" in lines
    assert any(line.startswith("skip      membership staff/ghost") for line in lines)
    assert directory.list_users() == [] and directory.list_groups() == []


def test_import_keeps_numbers_and_a_second_run_changes_nothing(directory: SqlDirectory) -> None:
    _apply(directory, _batch())
    alice = directory.get_user("alice")
    assert (alice.uid_number, alice.gid_number) == (10005, 20005)
    assert directory.get_group("staff").member_names == ("alice",)
    assert directory.get_credentials("alice").password_hash == SSHA  # type: ignore[union-attr]
    again = _apply(directory, _batch())
    assert [line for line in again if not line.startswith(("unchanged", "skip"))] == []


def test_numbers_below_an_imported_one_are_never_handed_out_after_it(
    directory: SqlDirectory,
) -> None:
    _apply(directory, _batch())
    directory.delete_user("alice")
    bob = directory.create_user(NewUser("bob"))
    assert bob.uid_number > 10005
    assert directory.get_group("users").gid_number > 20005


def test_an_update_replaces_attributes_but_not_a_hash_ldapsrv_made(
    directory: SqlDirectory,
) -> None:
    _apply(directory, _batch())
    directory.set_password_hash("alice", hash_password(b"changed here", 4))
    lines = _apply(directory, _batch(mail="new@example.org", password_hash=SSHA))
    assert any(line.startswith("update    person alice: mail; password kept") for line in lines)
    assert directory.get_user("alice").mail == "new@example.org"
    stored = directory.get_credentials("alice").password_hash  # type: ignore[union-attr]
    assert stored is not None and stored.startswith("$bcrypt-sha256$")


def test_any_bad_entry_refuses_the_whole_import_naming_each(directory: SqlDirectory) -> None:
    directory.create_user(NewUser("owner", uid_number=10005))
    batch = _batch()
    batch.people.append(ImportedPerson("bob", "line 20", mail="x\x01y"))
    with pytest.raises(ImportRefused) as refused:
        _apply(directory, batch)
    problems = refused.value.problems
    assert any(p.startswith("line 3: uid number 10005 is already taken") for p in problems)
    assert any(p.startswith("line 20: mail must not contain control") for p in problems)
    assert [u.name for u in directory.list_users()] == ["owner"]
    assert directory.list_groups() == [g for g in directory.list_groups() if g.name == "users"]


def test_entries_without_numbers_never_get_a_number_the_file_names(
    directory: SqlDirectory,
) -> None:
    batch = ImportBatch(
        people=[
            ImportedPerson("early", "line 1"),  # allocated, before the numbered ones
            ImportedPerson("numbered", "line 5", uid_number=10000, gid_number=20000),
        ],
        groups=[
            ImportedGroup("unnumbered", "line 9"),
            ImportedGroup("g", "line 12", gid_number=20001),
        ],
    )
    _apply(directory, batch)
    assert directory.get_user("early").uid_number == 10001
    assert directory.get_user("numbered").uid_number == 10000
    assert directory.get_group("unnumbered").gid_number == 20002
