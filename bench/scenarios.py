"""The scenarios of issue 5, as workloads for the load generator.

Every request is encoded here, once; the expected answers come from the data set
(one entry per existing uid, a person's number of groups, the whole population
for an enumeration, what the group-scoped account may see), so a server that
answers fast but wrong scores errors, not throughput.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.dataset import (
    FULL_READER,
    GROUPS_DN,
    SCOPED_READER,
    USERS_DN,
    DataSet,
    Person,
)
from bench.ldapsrv_target import Secrets
from bench.protocol import (
    SCOPE_SUB,
    bind_request,
    both,
    equals,
    negate,
    present,
    search_request,
    unbind_request,
)
from bench.workload import Exchange, Op, PagedSearch, Workload

#: What SSSD asks for when it looks up a user / a group (a representative subset).
USER_ATTRIBUTES = (
    "objectClass",
    "uid",
    "userPassword",
    "uidNumber",
    "gidNumber",
    "gecos",
    "homeDirectory",
    "loginShell",
    "cn",
    "memberOf",
    "modifyTimestamp",
)
GROUP_ATTRIBUTES = (
    "objectClass",
    "cn",
    "userPassword",
    "gidNumber",
    "member",
    "memberUid",
    "modifyTimestamp",
)
PAGE_SIZE = 500
SETUP_ID = 1
OP_ID = 2
#: Upper bound on pre-encoded operations per workload (they are cycled).
MAX_OPS = 20_000


def sssd_user_filter(name: str) -> bytes:
    """SSSD's user lookup:
    ``(&(uid=NAME)(objectClass=posixAccount)(uid=*)(&(uidNumber=*)(!(uidNumber=0))))``."""
    return both(
        equals("uid", name),
        equals("objectClass", "posixAccount"),
        present("uid"),
        both(present("uidNumber"), negate(equals("uidNumber", "0"))),
    )


def member_uid_filter(name: str) -> bytes:
    """SSSD's initgroups for rfc2307:
    ``(&(memberUid=NAME)(objectClass=posixGroup)(cn=*)(&(gidNumber=*)(!(gidNumber=0))))``."""
    return both(
        equals("memberUid", name),
        equals("objectClass", "posixGroup"),
        present("cn"),
        both(present("gidNumber"), negate(equals("gidNumber", "0"))),
    )


def member_filter(dn: str) -> bytes:
    """The rfc2307bis form: ``member=<person's DN>``."""
    return both(
        equals("member", dn),
        equals("objectClass", "posixGroup"),
        present("cn"),
        both(present("gidNumber"), negate(equals("gidNumber", "0"))),
    )


def user_lookup(person: Person, expected: int, message_id: int = OP_ID) -> Exchange:
    request = search_request(
        message_id, USERS_DN, SCOPE_SUB, sssd_user_filter(person.name), USER_ATTRIBUTES
    )
    return Exchange(request, message_id, entries=expected)


def group_lookup(search_filter: bytes, expected: int) -> Exchange:
    request = search_request(OP_ID, GROUPS_DN, SCOPE_SUB, search_filter, GROUP_ATTRIBUTES)
    return Exchange(request, OP_ID, entries=expected)


def reader_bind(name: str, secret: str) -> Exchange:
    return Exchange(bind_request(SETUP_ID, f"cn={name},{USERS_DN}", secret), SETUP_ID)


def _people(data: DataSet) -> tuple[Person, ...]:
    return data.people[:MAX_OPS]


def token_bind(data: DataSet, secrets: Secrets) -> Workload:
    bind = bind_request(OP_ID, f"cn={FULL_READER},{USERS_DN}", secrets.full_token)
    return Workload("token_bind", (Op((Exchange(bind, OP_ID),)),))


def password_bind(data: DataSet, secrets: Secrets) -> Workload:
    ops = tuple(
        Op((Exchange(bind_request(OP_ID, p.dn, data.password), OP_ID),)) for p in _people(data)
    )
    return Workload("password_bind", ops)


def uid_lookup(data: DataSet, secrets: Secrets) -> Workload:
    ops = tuple(Op((user_lookup(p, 1),)) for p in _people(data))
    return Workload("user_lookup", ops, setup=(reader_bind(FULL_READER, secrets.full_token),))


def membership_lookup(data: DataSet, secrets: Secrets) -> Workload:
    ops: list[Op] = []
    for index, person in enumerate(_people(data)):
        expected = data.groups_of[index]
        search_filter = member_uid_filter(person.name) if index % 2 else member_filter(person.dn)
        ops.append(Op((group_lookup(search_filter, expected),)))
    return Workload(
        "group_lookup", tuple(ops), setup=(reader_bind(FULL_READER, secrets.full_token),)
    )


def enumeration(data: DataSet, secrets: Secrets) -> Workload:
    paged = PagedSearch(
        USERS_DN, SCOPE_SUB, equals("objectClass", "posixAccount"), USER_ATTRIBUTES, PAGE_SIZE
    )
    first = Exchange(paged.next_page(OP_ID, b""), OP_ID, entries=data.people_count, paged=paged)
    return Workload(
        "enumeration", (Op((first,)),), setup=(reader_bind(FULL_READER, secrets.full_token),)
    )


def churn(data: DataSet, secrets: Secrets) -> Workload:
    bind = reader_bind(FULL_READER, secrets.full_token)
    ops = tuple(Op((bind, user_lookup(p, 1)), fresh_connection=True) for p in _people(data))
    return Workload("churn", ops, closing=unbind_request(OP_ID + 1))


def restricted(data: DataSet, secrets: Secrets) -> Workload:
    """The group-scoped account: it sees the scope group and its members only, so a
    member's uid lookup finds 1 entry, anyone else's 0, and a member's group lookups
    find only the scope group."""
    scope = set(data.scope.members)
    outside = [i for i in range(min(data.people_count, MAX_OPS)) if i not in scope]
    ops: list[Op] = []
    for n, member in enumerate(sorted(scope)):
        person = data.people[member]
        ops.append(Op((user_lookup(person, 1),)))
        if outside:
            ops.append(Op((user_lookup(data.people[outside[n % len(outside)]], 0),)))
        ops.append(Op((group_lookup(member_uid_filter(person.name), 1),)))
        ops.append(Op((group_lookup(member_filter(person.dn), 1),)))
    return Workload(
        "restricted_lookup", tuple(ops), setup=(reader_bind(SCOPED_READER, secrets.scoped_token),)
    )


@dataclass(frozen=True)
class Scenario:
    name: str
    build: Callable[[DataSet, Secrets], Workload]
    unit: str = "ops"  # "entries" for the enumeration: its rate is entries per second


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("token_bind", token_bind),
        Scenario("password_bind", password_bind),
        Scenario("user_lookup", uid_lookup),
        Scenario("group_lookup", membership_lookup),
        Scenario("enumeration", enumeration, unit="entries"),
        Scenario("churn", churn),
        Scenario("restricted_lookup", restricted),
    )
}
