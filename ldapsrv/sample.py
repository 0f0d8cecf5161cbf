"""Sample data for a first look (`ldapsrv db sample`, `make run SAMPLE=1`).

Three people and two groups, written straight into the database before the
server starts. Each person gets a freshly generated password, printed once on
the admin's terminal (like a token at creation) and stored only as a hash.
Running it again leaves existing entries alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ldapsrv.auth.passwords import generate_password, hash_password
from ldapsrv.directory.records import AuditEvent
from ldapsrv.errors import AlreadyExists
from ldapsrv.store.directory import NewUser, SqlDirectory


@dataclass(frozen=True, slots=True)
class SamplePerson:
    name: str
    given_name: str
    surname: str


PEOPLE = (
    SamplePerson("alice", "Alice", "Liddell"),
    SamplePerson("bob", "Bob", "Marley"),
    SamplePerson("carol", "Carol", "Danvers"),
)
GROUPS = {"developers": ("alice", "bob"), "admins": ("alice",)}
_AUDIT = AuditEvent(actor="ldapsrv db sample", channel="cli", action="sample", target="sample data")


def load_sample(directory: SqlDirectory, cost: int, say: Callable[[str], None]) -> None:
    """Create what is missing and ``say`` what happened (passwords included, once)."""
    for person in PEOPLE:
        password = generate_password()
        spec = NewUser(
            name=person.name,
            password_hash=hash_password(password.encode(), cost),
            given_name=person.given_name,
            surname=person.surname,
            display_name=f"{person.given_name} {person.surname}",
            mail=f"{person.name}@example.org",
        )
        try:
            directory.create_user(spec, audit=_AUDIT)
        except AlreadyExists:
            say(f"person {person.name}: exists, left as it is")
            continue
        say(f"person {person.name}: password {password}")
    for group, members in GROUPS.items():
        try:
            directory.create_group(group, description=f"sample group {group}")
        except AlreadyExists:
            say(f"group {group}: exists, left as it is")
            continue
        for member in members:
            directory.add_member(group, member)
        say(f"group {group}: {', '.join(members)}")
    say("store these passwords now: they are not shown again")
