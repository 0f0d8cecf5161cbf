"""What an import carries into the store, whatever file it came from, and what
the store reports back. Plain values: the store validates them (the same rules
as for admin commands) inside the import's one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ImportedPerson:
    """A person to create or update. None means "the source does not say":
    the store leaves that attribute as it is (or allocates / uses its default
    for a new person). ``password_hash`` is already known to be verifiable."""

    name: str
    source: str  # where it came from, for messages: "line 12 (uid=alice,...)"
    uid_number: int | None = None
    gid_number: int | None = None
    display_name: str | None = None
    given_name: str | None = None
    surname: str | None = None
    mail: str | None = None
    home_directory: str | None = None
    login_shell: str | None = None
    gecos: str | None = None
    password_hash: str | None = None
    disabled: bool | None = None


@dataclass(frozen=True, slots=True)
class ImportedGroup:
    """A group to create or update; ``members`` are account names to add (an
    import adds memberships, it never removes one)."""

    name: str
    source: str
    gid_number: int | None = None
    description: str | None = None
    members: tuple[str, ...] = ()


@dataclass(slots=True)
class ImportBatch:
    """A parsed file: what to import, and report lines for what was left out."""

    people: list[ImportedPerson] = field(default_factory=list)
    groups: list[ImportedGroup] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Change:
    """One line of an import's plan: ``action`` is create, update, unchanged or skip."""

    action: str
    target: str  # "person alice", "group developers", "membership developers/alice"
    detail: str = ""

    def line(self) -> str:
        return f"{self.action:<9} {self.target}" + (f": {self.detail}" if self.detail else "")
