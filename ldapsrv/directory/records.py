"""What the store hands to the directory layer: plain rows, no ORM objects."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A person. ``group_names`` are the groups the user is a direct member of."""

    id: int
    uuid: str
    name: str
    uid_number: int
    gid_number: int
    display_name: str | None
    given_name: str | None
    surname: str | None
    mail: str | None
    home_directory: str
    login_shell: str
    gecos: str | None
    created: datetime
    modified: datetime
    group_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """A group. ``member_names`` are its direct members' account names."""

    id: int
    uuid: str
    name: str
    gid_number: int
    description: str | None
    created: datetime
    modified: datetime
    member_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a bind needs to know about an account: never leaves the server."""

    account_id: int
    name: str
    password_hash: str | None
    disabled: bool
