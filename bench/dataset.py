"""The benchmark's data set: people, groups of people, the accounts that read them.

Deterministic for a given size and seed, so every run (and both servers) see the
same directory, and the load generator knows the right answer to every query
(how many groups a person is in, who is in the restricted account's scope).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

BASE_DN = "dc=example,dc=org"
USERS_DN = f"ou=users,{BASE_DN}"
GROUPS_DN = f"ou=groups,{BASE_DN}"
#: Every person's primary gid (a group entry without member rows, as POSIX allows).
PRIMARY_GID = 5000
PRIMARY_GROUP = "people"
FIRST_UID = 10000
FIRST_GID = 20000
FULL_READER = "svc-full"
SCOPED_READER = "svc-scoped"
SCOPE_GROUP = "bench-scope"


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    uid_number: int
    given_name: str
    surname: str

    @property
    def dn(self) -> str:
        return f"cn={self.name},{USERS_DN}"

    @property
    def mail(self) -> str:
        return f"{self.name}@example.org"

    @property
    def display_name(self) -> str:
        return f"{self.given_name} {self.surname}"


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    gid_number: int
    members: tuple[int, ...]  # indexes into DataSet.people

    @property
    def dn(self) -> str:
        return f"cn={self.name},{GROUPS_DN}"


_GIVEN = ("ada", "alan", "grace", "edsger", "barbara", "ken", "dennis", "linus", "radia", "leslie")
_SURNAMES = ("lovelace", "turing", "hopper", "dijkstra", "liskov", "thompson", "ritchie", "lamport")


@dataclass(frozen=True)
class DataSet:
    """``people`` persons in ``groups`` groups of ``group_size`` members drawn at random
    (seeded), plus the scope group of the restricted service account (the first
    ``group_size`` people)."""

    people_count: int = 10_000
    group_count: int = 500
    group_size: int = 20
    seed: int = 1
    #: Every person's password (bench only; both servers store it hashed).
    password: str = "bench-Password-1"

    def __post_init__(self) -> None:
        if self.people_count < 1 or self.group_count < 0:
            raise ValueError("the data set needs at least one person and no negative group count")
        if not 1 <= self.group_size <= self.people_count:
            raise ValueError("group size must be between 1 and the number of people")

    @cached_property
    def people(self) -> tuple[Person, ...]:
        rng = random.Random(self.seed)
        return tuple(
            Person(
                name=f"user{i:06d}",
                uid_number=FIRST_UID + i,
                given_name=rng.choice(_GIVEN).title(),
                surname=rng.choice(_SURNAMES).title(),
            )
            for i in range(self.people_count)
        )

    @cached_property
    def groups(self) -> tuple[Group, ...]:
        rng = random.Random(self.seed + 1)
        indexes = range(self.people_count)
        made = [
            Group(
                name=f"group{g:04d}",
                gid_number=FIRST_GID + g,
                members=tuple(sorted(rng.sample(indexes, self.group_size))),
            )
            for g in range(self.group_count)
        ]
        scope = Group(
            name=SCOPE_GROUP,
            gid_number=FIRST_GID + self.group_count,
            members=tuple(range(self.group_size)),
        )
        return (*made, scope)

    @cached_property
    def groups_of(self) -> tuple[int, ...]:
        """How many groups each person (by index) is a direct member of."""
        counts = [0] * self.people_count
        for group in self.groups:
            for member in group.members:
                counts[member] += 1
        return tuple(counts)

    @property
    def scope(self) -> Group:
        return self.groups[-1]

    def describe(self) -> dict[str, int]:
        return {
            "people": self.people_count,
            "groups": len(self.groups),
            "group_size": self.group_size,
            "memberships": sum(len(g.members) for g in self.groups),
            "seed": self.seed,
        }
