"""``ldapsrv export``: the directory's people and groups as LDIF, as served.

The entries are rendered by the same ``Renderer`` the LDAP server uses (so an
export shows exactly what a full-directory searcher sees: inetOrgPerson +
posixAccount people, groupOfNames + posixGroup groups), in name order, with
the base and the two containers first, so that slapadd or ldapadd can load it
elsewhere. Operational attributes are left out except ``nsAccountLock: TRUE``
for disabled people (which an import reads back). Service accounts are not
exported: they bind with tokens, which do not move. Password hashes are
exported only when asked (``userPassword``), never by default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ldapsrv.directory.dit import Dit
from ldapsrv.directory.entries import Renderer, Selection
from ldapsrv.directory.records import GroupRecord, UserRecord
from ldapsrv.directory.schema import load_schema
from ldapsrv.migration.ldif import format_entry


def export_entries(
    base_dn: str,
    people: list[UserRecord],
    groups: list[GroupRecord],
    password_hash: Callable[[str], str | None] | None = None,
) -> Iterator[str]:
    """LDIF records, one string each; ``password_hash(name)`` adds userPassword."""
    dit = Dit(base_dn)
    selection = Selection(all_user=True, all_operational=False, names=frozenset({"nsaccountlock"}))
    renderer = Renderer(dit, load_schema(), selection)
    for static in (dit.base_entry, dit.users_entry, dit.groups_entry):
        yield format_entry(*renderer.static(static))
    for person in sorted(people, key=lambda record: record.name.lower()):
        dn, attributes = renderer.user(person)
        if password_hash is not None:
            stored = password_hash(person.name)
            if stored is not None:
                attributes = [*attributes, ("userPassword", [stored.encode("ascii")])]
        yield format_entry(dn, attributes)
    for group in sorted(groups, key=lambda record: record.name.lower()):
        yield format_entry(*renderer.group(group))


def export_header(with_hashes: bool) -> str:
    note = (
        "# WITH PASSWORD HASHES: keep this file as secret as the database\n"
        if with_hashes
        else "# without password hashes (ldapsrv export --with-password-hashes adds them)\n"
    )
    return "# ldapsrv export\n" + note + "version: 1\n\n"
