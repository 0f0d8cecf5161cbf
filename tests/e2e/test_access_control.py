"""Access control over real LDAP connections: who sees which entries, and what else
grants change (issue 4).

A small fixed directory, on SQLite, PostgreSQL and MariaDB (visibility is decided in the
SQL of every search):

- people alice, bob, carol; groups nas-users {alice}, staff {bob}, admins {carol}, and
  the default group ``users`` {alice, bob, carol};
- service accounts ``sa-plain`` (no grant), ``sa-scoped`` (``search`` scoped to
  nas-users) and ``sa-full`` (in ``ldap-readers``, which holds
  ``search_full_directory``), plus the server's own ``ldapsrv-health``.

Every viewer (anonymous, alice, each service account) runs base, one-level, subtree and
paged searches, filters on hidden members and compares, through python-ldap and
ldapsearch, and gets exactly the entries the rules allow. Hidden entries answer like
entries that do not exist. Grants and revokes, admin password resets, disabled people
and the TLS requirement are tested on servers of their own.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ldap
import pytest
from ldap.controls import SimplePagedResultsControl
from ldap.ldapobject import SimpleLDAPObject

from e2e.clients import (
    COMPARE_FALSE,
    COMPARE_TRUE,
    INSUFFICIENT_ACCESS,
    NO_SUCH_OBJECT,
    PAGED_RESULTS_OID,
    SUCCESS,
    Credentials,
    ldapsearch,
    ldapwhoami,
    whoami,
)
from e2e.harness import (
    BACKENDS,
    READERS_GROUP,
    LdapServer,
    ldap_client_env,
    require_service,
    run_tool,
    serving,
)

TIMEOUT = 10
CONFIDENTIALITY_REQUIRED = 13
HEALTH_ACCOUNT = "ldapsrv-health"
PEOPLE = ("alice", "bob", "carol")
SERVICE_ACCOUNTS = ("sa-plain", "sa-scoped", "sa-full")
GROUPS = {"nas-users": ["alice"], "staff": ["bob"], "admins": ["carol"]}
#: Every person is a member of the default group ``users``.
DEFAULT_GROUP = "users"
VIEWERS = ("anonymous", "alice", "sa-plain", "sa-scoped", "sa-full")


@pytest.fixture(scope="module", autouse=True)
def _ldap_utils() -> None:
    require_service("ldap-utils")


def password_of(name: str) -> str:
    return f"{name}-Secret-Password-1"


# ------------------------------------------------------------------ the directory


@dataclass
class Directory:
    """The module's server, the viewers' credentials and the expected answers."""

    server: LdapServer
    credentials: dict[str, Credentials]

    def user(self, name: str) -> str:
        return self.server.user_dn(name).lower()

    def group(self, name: str) -> str:
        return self.server.group_dn(name).lower()

    @property
    def containers(self) -> set[str]:
        base = self.server.base_dn.lower()
        return {base, f"ou=users,{base}", f"ou=groups,{base}"}

    @property
    def accounts(self) -> set[str]:
        names = (*PEOPLE, *SERVICE_ACCOUNTS, HEALTH_ACCOUNT)
        return {self.user(n) for n in names}

    @property
    def groups(self) -> set[str]:
        return {self.group(n) for n in (*GROUPS, DEFAULT_GROUP, READERS_GROUP)}

    def visible(self, viewer: str) -> set[str]:
        """The entries (not containers) ``viewer`` may see."""
        return {
            "anonymous": set(),
            "alice": {self.user("alice"), self.group("nas-users"), self.group(DEFAULT_GROUP)},
            "sa-plain": {self.user("sa-plain")},
            "sa-scoped": {self.user("sa-scoped"), self.group("nas-users"), self.user("alice")},
            "sa-full": self.accounts | self.groups,
        }[viewer]

    def visible_with_containers(self, viewer: str) -> set[str]:
        if viewer == "anonymous":
            return set()
        return self.visible(viewer) | self.containers

    def members(self, group: str) -> set[str]:
        """Every member of ``group`` (people and service accounts), as DNs."""
        names = {DEFAULT_GROUP: list(PEOPLE), READERS_GROUP: ["sa-full"], **GROUPS}[group]
        return {self.user(n) for n in names}


@pytest.fixture(scope="module", params=BACKENDS)
def directory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Directory]:
    backend = str(request.param)
    workdir = tmp_path_factory.mktemp(f"access-{backend}")
    with serving(backend, workdir) as server:
        for name in PEOPLE:
            server.add_user(name, password_of(name))
        for group, members in GROUPS.items():
            server.add_group(group, members)
        credentials = {
            name: Credentials(server.user_dn(name), password_of(name)) for name in PEOPLE
        }
        for name in SERVICE_ACCOUNTS:
            created = server.create_service_account(name)
            credentials[name] = Credentials(str(created["dn"]), str(created["token"]))
        server.grant("search", user="sa-scoped", scope="nas-users")
        server.add_full_directory_reader("sa-full")
        yield Directory(server, credentials)


# ---------------------------------------------------------------------- clients


def connect(server: LdapServer, url: str | None = None) -> SimpleLDAPObject:
    conn = ldap.initialize(url or server.ldap_url)
    conn.protocol_version = ldap.VERSION3
    conn.set_option(ldap.OPT_REFERRALS, 0)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, TIMEOUT)
    conn.set_option(ldap.OPT_TIMEOUT, TIMEOUT)
    conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(server.ca_path))
    conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
    conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
    return conn


@contextlib.contextmanager
def session(directory: Directory, viewer: str) -> Iterator[SimpleLDAPObject]:
    """A python-ldap connection bound as ``viewer`` (none for anonymous)."""
    conn = connect(directory.server)
    try:
        if viewer != "anonymous":
            creds = directory.credentials[viewer]
            conn.simple_bind_s(creds.dn, creds.password)
        yield conn
    finally:
        conn.unbind_s()


@dataclass(frozen=True)
class Outcome:
    """A search's result code, the DNs it returned (lower-cased) and its matchedDN."""

    code: int
    dns: frozenset[str]
    matched: str = ""


SCOPES = {"base": ldap.SCOPE_BASE, "one": ldap.SCOPE_ONELEVEL, "sub": ldap.SCOPE_SUBTREE}


def search(
    conn: SimpleLDAPObject, base: str, scope: str = "sub", filter_: str = "(objectClass=*)"
) -> Outcome:
    try:
        found = conn.search_s(base, SCOPES[scope], filter_, ["1.1"])
    except ldap.NO_SUCH_OBJECT as exc:
        info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        return Outcome(NO_SUCH_OBJECT, frozenset(), str(info.get("matched", "")).lower())
    return Outcome(SUCCESS, frozenset(dn.lower() for dn, _ in found if dn is not None))


def attributes_of(
    conn: SimpleLDAPObject, base: str, attributes: list[str], filter_: str = "(objectClass=*)"
) -> dict[str, dict[str, set[str]]]:
    """DN -> attribute (lower-cased) -> values (lower-cased), subtree under ``base``."""
    found = conn.search_s(base, ldap.SCOPE_SUBTREE, filter_, attributes)
    return {
        dn.lower(): {
            name.lower(): {v.decode().lower() for v in values} for name, values in attrs.items()
        }
        for dn, attrs in found
        if dn is not None
    }


def paged_pages(conn: SimpleLDAPObject, base: str, page_size: int) -> tuple[int, list[list[str]]]:
    """(result code, pages of DNs) of a paged subtree search, following the cookies."""
    control = SimplePagedResultsControl(True, size=page_size, cookie=b"")
    pages: list[list[str]] = []
    for _ in range(100):
        try:
            msgid = conn.search_ext(
                base, ldap.SCOPE_SUBTREE, "(objectClass=*)", ["1.1"], serverctrls=[control]
            )
            _, data, _, controls = conn.result3(msgid, timeout=TIMEOUT)
        except ldap.NO_SUCH_OBJECT:
            return NO_SUCH_OBJECT, pages
        pages.append([dn.lower() for dn, _ in data if dn is not None])
        response = [c for c in controls if c.controlType == PAGED_RESULTS_OID]
        assert response, "the server ignored the paged results control"
        if not response[0].cookie:
            return SUCCESS, pages
        control.cookie = response[0].cookie
    raise AssertionError("paging did not end after 100 pages")


def full_pages(count: int, size: int) -> list[int]:
    """Page lengths when every page but the last is full."""
    return [size] * (count // size) + ([count % size] if count % size else [])


def bind_of(directory: Directory, viewer: str) -> Credentials | None:
    return None if viewer == "anonymous" else directory.credentials[viewer]


# ----------------------------------------------------------------- the search matrix


@pytest.mark.parametrize("viewer", VIEWERS)
def test_subtree_search_from_the_base_returns_exactly_the_visible_entries(
    directory: Directory, viewer: str
) -> None:
    expected = directory.visible_with_containers(viewer)
    with session(directory, viewer) as conn:
        outcome = search(conn, directory.server.base_dn)
    assert outcome.dns == expected
    assert outcome.code == (NO_SUCH_OBJECT if viewer == "anonymous" else SUCCESS)


@pytest.mark.parametrize("viewer", VIEWERS)
def test_ldapsearch_subtree_search_returns_exactly_the_visible_entries(
    directory: Directory, viewer: str
) -> None:
    server = directory.server
    result = ldapsearch(server, server.base_dn, attributes=["1.1"], bind=bind_of(directory, viewer))
    assert {dn.lower() for dn in result.dns} == directory.visible_with_containers(viewer)
    expected_code = NO_SUCH_OBJECT if viewer == "anonymous" else SUCCESS
    assert result.result.returncode == expected_code, result.result.describe()


@pytest.mark.parametrize("viewer", VIEWERS)
def test_one_level_searches_return_exactly_the_visible_children(
    directory: Directory, viewer: str
) -> None:
    server = directory.server
    users, groups = f"ou=users,{server.base_dn}", f"ou=groups,{server.base_dn}"
    visible = directory.visible(viewer)
    with session(directory, viewer) as conn:
        top = search(conn, server.base_dn, "one")
        accounts = search(conn, users, "one")
        group_entries = search(conn, groups, "one")
    if viewer == "anonymous":
        assert {top.code, accounts.code, group_entries.code} == {NO_SUCH_OBJECT}
        assert top.dns | accounts.dns | group_entries.dns == frozenset()
        return
    assert top.dns == {users.lower(), groups.lower()}
    assert accounts.dns == visible & directory.accounts
    assert group_entries.dns == visible & directory.groups


@pytest.mark.parametrize("viewer", VIEWERS)
def test_base_searches_find_visible_entries_and_hidden_ones_answer_like_missing_ones(
    directory: Directory, viewer: str
) -> None:
    server = directory.server
    missing_user = server.user_dn("no-such-account")
    missing_group = server.group_dn("no-such-group")
    visible = directory.visible_with_containers(viewer)
    with session(directory, viewer) as conn:
        like_missing_user = search(conn, missing_user, "base")
        like_missing_group = search(conn, missing_group, "base")
        assert like_missing_user.code == like_missing_group.code == NO_SUCH_OBJECT
        for dn in sorted(directory.accounts | directory.groups | directory.containers):
            outcome = search(conn, dn, "base")
            if dn in visible:
                assert outcome == Outcome(SUCCESS, frozenset({dn})), dn
            elif dn in directory.groups:
                assert outcome == like_missing_group, dn
            elif dn in directory.accounts:
                assert outcome == like_missing_user, dn
            else:  # a container, for anonymous
                assert outcome.code == NO_SUCH_OBJECT and not outcome.dns, dn


@pytest.mark.parametrize("viewer", VIEWERS)
def test_paged_search_with_page_size_two_pages_through_the_visible_entries_only(
    directory: Directory, viewer: str
) -> None:
    expected = directory.visible_with_containers(viewer)
    with session(directory, viewer) as conn:
        code, pages = paged_pages(conn, directory.server.base_dn, 2)
    dns = [dn for page in pages for dn in page]
    assert sorted(dns) == sorted(expected)  # each once
    if viewer == "anonymous":
        assert code == NO_SUCH_OBJECT
        return
    assert code == SUCCESS
    # Only visible entries are counted: no short or empty pages before the last one.
    assert [len(page) for page in pages] == full_pages(len(expected), 2)


@pytest.mark.parametrize("viewer", VIEWERS)
def test_ldapsearch_paged_search_with_page_size_two_pages_through_the_visible_entries_only(
    directory: Directory, viewer: str
) -> None:
    server = directory.server
    result = ldapsearch(
        server,
        server.base_dn,
        attributes=["1.1"],
        bind=bind_of(directory, viewer),
        options=["-E", "pr=2/noprompt"],
    )
    expected = directory.visible_with_containers(viewer)
    assert sorted(dn.lower() for dn in result.dns) == sorted(expected), result.result.describe()
    if viewer == "anonymous":
        assert result.result.returncode == NO_SUCH_OBJECT, result.result.describe()
        return
    assert result.result.returncode == SUCCESS, result.result.describe()
    pages = [len(page) for page in result.output.pages if page]
    assert pages == full_pages(len(expected), 2), result.result.describe()


def group_members(directory: Directory) -> dict[str, set[str]]:
    return {
        directory.group(g): directory.members(g) for g in (*GROUPS, DEFAULT_GROUP, READERS_GROUP)
    }


@pytest.mark.parametrize("viewer", [v for v in VIEWERS if v != "anonymous"])
def test_member_lists_and_member_of_name_only_visible_entries(
    directory: Directory, viewer: str
) -> None:
    visible = directory.visible(viewer)
    members = group_members(directory)
    with session(directory, viewer) as conn:
        found = attributes_of(conn, directory.server.base_dn, ["member", "memberUid", "memberOf"])
    checked = 0
    for dn, attrs in found.items():
        if dn in directory.groups:
            expected = members[dn] & visible
            assert attrs.get("member", set()) == expected, dn
            uids = {m.split(",", 1)[0].removeprefix("cn=") for m in expected}
            assert attrs.get("memberuid", set()) == uids, dn
            checked += 1
        elif dn in directory.accounts:
            expected = {g for g, m in members.items() if dn in m} & visible
            assert attrs.get("memberof", set()) == expected, dn
            checked += 1
    assert checked == len(visible)


#: Filters naming hidden members or groups: name -> (filter template, expected entries
#: per viewer as ("user"|"group", name) pairs; viewers not listed get none).
FILTERS: dict[str, tuple[str, dict[str, set[tuple[str, str]]]]] = {
    "member-is-a-hidden-person": (
        "(member={user:bob})",
        {"sa-full": {("group", "users"), ("group", "staff")}},
    ),
    "memberuid-is-a-hidden-person": (
        "(memberUid=bob)",
        {"sa-full": {("group", "users"), ("group", "staff")}},
    ),
    "memberof-a-group-hidden-from-scoped-search": (
        "(memberOf={group:users})",
        {
            "alice": {("user", "alice")},
            "sa-full": {("user", "alice"), ("user", "bob"), ("user", "carol")},
        },
    ),
    "not-memberof-a-hidden-group": (
        "(&(objectClass=posixAccount)(!(memberOf={group:users})))",
        {"sa-scoped": {("user", "alice")}},
    ),
    "memberof-the-scope-group": (
        "(memberOf={group:nas-users})",
        {
            "alice": {("user", "alice")},
            "sa-scoped": {("user", "alice")},
            "sa-full": {("user", "alice")},
        },
    ),
    "member-present": (
        "(member=*)",
        {
            "alice": {("group", "users"), ("group", "nas-users")},
            "sa-scoped": {("group", "nas-users")},
            "sa-full": {
                ("group", g) for g in ("users", "nas-users", "staff", "admins", READERS_GROUP)
            },
        },
    ),
    "hidden-entries-by-name": (
        "(|(uid=bob)(cn=staff)(cn=sa-plain))",
        {
            "sa-plain": {("user", "sa-plain")},
            "sa-full": {("user", "bob"), ("group", "staff"), ("user", "sa-plain")},
        },
    ),
}


def render_filter(directory: Directory, template: str) -> str:
    return re.sub(
        r"\{(user|group):([^}]+)\}",
        lambda m: getattr(directory.server, f"{m.group(1)}_dn")(m.group(2)),
        template,
    )


@pytest.mark.parametrize("viewer", VIEWERS)
@pytest.mark.parametrize("case", list(FILTERS))
def test_filters_on_hidden_members_and_groups_match_only_what_the_viewer_may_see(
    directory: Directory, case: str, viewer: str
) -> None:
    template, expected_by_viewer = FILTERS[case]
    filter_ = render_filter(directory, template)
    expected = {
        directory.user(name) if kind == "user" else directory.group(name)
        for kind, name in expected_by_viewer.get(viewer, set())
    }
    with session(directory, viewer) as conn:
        outcome = search(conn, directory.server.base_dn, "sub", filter_)
    assert outcome.dns == expected, filter_
    assert outcome.code == (NO_SUCH_OBJECT if viewer == "anonymous" else SUCCESS)


#: Compares: name -> (entry, attribute, value template, answer per viewer; others get
#: noSuchObject).
COMPARES: dict[str, tuple[tuple[str, str], str, str, dict[str, int]]] = {
    "uid-of-a-hidden-person": (("user", "bob"), "uid", "bob", {"sa-full": COMPARE_TRUE}),
    "uid-of-a-visible-person": (
        ("user", "alice"),
        "uid",
        "alice",
        {"alice": COMPARE_TRUE, "sa-scoped": COMPARE_TRUE, "sa-full": COMPARE_TRUE},
    ),
    "hidden-member-of-a-visible-group": (
        ("group", "users"),
        "member",
        "{user:bob}",
        {"alice": COMPARE_FALSE, "sa-full": COMPARE_TRUE},
    ),
    "hidden-memberuid-of-a-visible-group": (
        ("group", "users"),
        "memberUid",
        "bob",
        {"alice": COMPARE_FALSE, "sa-full": COMPARE_TRUE},
    ),
    "hidden-group-in-member-of": (
        ("user", "alice"),
        "memberOf",
        "{group:users}",
        {"alice": COMPARE_TRUE, "sa-scoped": COMPARE_FALSE, "sa-full": COMPARE_TRUE},
    ),
    "an-entry-that-does-not-exist": (("user", "no-such-account"), "uid", "x", {}),
}


def python_ldap_compare(conn: SimpleLDAPObject, dn: str, attr: str, value: str) -> int:
    try:
        return COMPARE_TRUE if conn.compare_s(dn, attr, value.encode()) else COMPARE_FALSE
    except ldap.NO_SUCH_OBJECT:
        return NO_SUCH_OBJECT


def ldapcompare_as(
    directory: Directory, viewer: str, dn: str, attr: str, value: str
) -> tuple[int, str]:
    server = directory.server
    argv = ["ldapcompare", "-x", "-H", server.ldap_url, "-o", "nettimeout=10"]
    creds = bind_of(directory, viewer)
    if creds is not None:
        argv += ["-D", creds.dn, "-w", creds.password]
    result = run_tool([*argv, dn, f"{attr}:{value}"], env=ldap_client_env(server.ca_path))
    return result.returncode, result.describe()


@pytest.mark.parametrize("client", ["python-ldap", "ldapcompare"])
@pytest.mark.parametrize("viewer", VIEWERS)
@pytest.mark.parametrize("case", list(COMPARES))
def test_compare_answers_no_such_object_for_hidden_entries_and_false_for_hidden_values(
    directory: Directory, case: str, viewer: str, client: str
) -> None:
    (kind, name), attr, template, answers = COMPARES[case]
    dn = getattr(directory.server, f"{kind}_dn")(name)
    value = render_filter(directory, template)
    expected = answers.get(viewer, NO_SUCH_OBJECT)
    if client == "python-ldap":
        with session(directory, viewer) as conn:
            assert python_ldap_compare(conn, dn, attr, value) == expected
    else:
        code, described = ldapcompare_as(directory, viewer, dn, attr, value)
        assert code == expected, described


# ------------------------------------------------- NAS profiles, as the README sets them up


@pytest.mark.parametrize(
    ("account", "people", "groups"),
    [
        # in ldap-readers (search_full_directory): a NAS that knows everyone
        ("sa-full", set(PEOPLE), {*GROUPS, DEFAULT_GROUP, READERS_GROUP}),
        # search scoped to nas-users: a NAS that knows one group
        ("sa-scoped", {"alice"}, {"nas-users"}),
    ],
    ids=["full-directory-through-ldap-readers", "scoped-to-nas-users"],
)
def test_a_nas_bound_as_its_service_account_lists_the_users_and_groups_its_grant_allows(
    directory: Directory, account: str, people: set[str], groups: set[str]
) -> None:
    server = directory.server
    creds = directory.credentials[account]
    users = ldapsearch(
        server,
        f"ou=users,{server.base_dn}",
        "(&(objectClass=posixAccount)(uid=*))",
        ["uid", "uidNumber", "gidNumber"],
        bind=creds,
        start_tls=True,
        options=["-E", "pr=500/noprompt"],
    )
    assert users.result.returncode == SUCCESS, users.result.describe()
    assert {e.get("uid")[0] for e in users.output.entries} == people
    assert all(e.get("uidnumber") and e.get("gidnumber") for e in users.output.entries)

    found = ldapsearch(
        server,
        f"ou=groups,{server.base_dn}",
        "(objectClass=posixGroup)",
        ["cn", "gidNumber", "memberUid"],
        bind=creds,
        url=server.ldaps_url,
        options=["-E", "pr=500/noprompt"],
    )
    assert found.result.returncode == SUCCESS, found.result.describe()
    listed = {e.get("cn")[0]: set(e.get("memberuid")) for e in found.output.entries}
    assert set(listed) == groups
    for group, members in listed.items():
        names = {dn.split(",", 1)[0].removeprefix("cn=") for dn in directory.members(group)}
        assert members == names & (people | {account}), group


# ---------------------------------------------------- grants change the next search


@dataclass
class Lab:
    """A server per backend for tests that change grants, passwords and account state:
    people dora, erin, frank, gina, hank; groups team {dora, hank}, helpdesk {erin}."""

    server: LdapServer

    def person(self, name: str) -> Credentials:
        return Credentials(self.server.user_dn(name), password_of(name))

    def service_account(self, name: str) -> Credentials:
        created = self.server.create_service_account(name)
        return Credentials(str(created["dn"]), str(created["token"]))


@pytest.fixture(scope="module", params=BACKENDS)
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    backend = str(request.param)
    workdir = tmp_path_factory.mktemp(f"access-lab-{backend}")
    with serving(backend, workdir) as server:
        for name in ("dora", "erin", "frank", "gina", "hank"):
            server.add_user(name, password_of(name))
        server.add_group("team", ["dora", "hank"])
        server.add_group("helpdesk", ["erin"])
        server.grant("reset_password", group="helpdesk")
        server.grant("reset_password", user="gina", scope="team")
        yield Lab(server)


@contextlib.contextmanager
def bound(
    server: LdapServer, creds: Credentials, url: str | None = None
) -> Iterator[SimpleLDAPObject]:
    conn = connect(server, url)
    try:
        conn.simple_bind_s(creds.dn, creds.password)
        yield conn
    finally:
        conn.unbind_s()


def people_seen(conn: SimpleLDAPObject, server: LdapServer) -> set[str]:
    outcome = search(conn, f"ou=users,{server.base_dn}", "one")
    assert outcome.code == SUCCESS
    return {dn.split(",", 1)[0].removeprefix("cn=") for dn in outcome.dns}


def test_a_grant_and_its_revocation_take_effect_on_the_next_search_of_the_same_connection(
    lab: Lab,
) -> None:
    server = lab.server
    creds = lab.service_account("sa-revoked")
    with bound(server, creds) as conn:
        assert people_seen(conn, server) == {"sa-revoked"}
        server.grant("search", user="sa-revoked", scope="team")
        assert people_seen(conn, server) == {"sa-revoked", "dora", "hank"}
        assert search(conn, server.group_dn("team"), "base").code == SUCCESS
        server.revoke("search", user="sa-revoked", scope="team")
        assert people_seen(conn, server) == {"sa-revoked"}
        assert search(conn, server.group_dn("team"), "base").code == NO_SUCH_OBJECT


def test_leaving_the_readers_group_hides_the_directory_on_the_next_search(lab: Lab) -> None:
    server = lab.server
    creds = lab.service_account("sa-leaver")
    server.add_full_directory_reader("sa-leaver", group="lab-readers")
    with bound(server, creds) as conn:
        seen = people_seen(conn, server)
        assert {"dora", "erin", "frank", "gina", "hank", "sa-leaver"} <= seen
        server.ctl("group", "remove-member", "lab-readers", "sa-leaver")
        assert people_seen(conn, server) == {"sa-leaver"}


def test_a_direct_grant_to_the_internal_service_account_is_refused_with_a_clear_message(
    lab: Lab,
) -> None:
    server = lab.server
    result = server.ctl(
        "permission", "grant", "search_full_directory", "--user", HEALTH_ACCOUNT, check=False
    )
    assert result.returncode != 0, result.stdout
    message = result.stderr.lower()
    assert "internal" in message and "group" in message, result.stderr
    assert "traceback" not in message
    assert server.ctl_json("permission", "list", "--user", HEALTH_ACCOUNT)["grants"] == []


# ------------------------------------------------------------- admin password reset


def ldappasswd_for(
    server: LdapServer, actor: Credentials, target_dn: str, new: str | None
) -> tuple[int, str, str]:
    """``ldappasswd -D actor ... [-s NEW] TARGET`` over StartTLS: (LDAP result code,
    stdout, description). ldappasswd exits 1 on any refusal and prints the code."""
    argv = [
        "ldappasswd", "-x", "-ZZ", "-H", server.ldap_url, "-o", "nettimeout=10",
        "-D", actor.dn, "-w", actor.password,
    ]  # fmt: skip
    if new is not None:
        argv += ["-s", new]
    result = run_tool([*argv, target_dn], env=ldap_client_env(server.ca_path))
    if result.returncode == SUCCESS:
        return SUCCESS, result.stdout, result.describe()
    printed = re.search(r"^Result: .*\((\d+)\)$", result.stdout + result.stderr, re.MULTILINE)
    assert printed, result.describe()
    return int(printed.group(1)), result.stdout, result.describe()


def test_reset_password_lets_its_holder_set_another_persons_password(lab: Lab) -> None:
    server = lab.server
    server.add_user("ivy", password_of("ivy"))
    code, _, described = ldappasswd_for(
        server, lab.person("erin"), server.user_dn("ivy"), "ivy-Reset-Password-2"
    )
    assert code == SUCCESS, described
    assert whoami(server, Credentials(server.user_dn("ivy"), "ivy-Reset-Password-2"))
    assert whoami(server, lab.person("ivy")) is None


def test_reset_password_without_a_new_password_prints_a_generated_one_that_binds(
    lab: Lab,
) -> None:
    server = lab.server
    server.add_user("jack", password_of("jack"))
    code, stdout, described = ldappasswd_for(
        server, lab.person("erin"), server.user_dn("jack"), None
    )
    assert code == SUCCESS, described
    match = re.search(r"^New password: (\S+)$", stdout, re.MULTILINE)
    assert match, described
    generated = match.group(1)
    assert len(generated) >= 12
    assert whoami(server, Credentials(server.user_dn("jack"), generated))
    assert whoami(server, lab.person("jack")) is None


def test_resetting_another_persons_password_without_the_grant_answers_insufficient_access(
    lab: Lab,
) -> None:
    server = lab.server
    for target in (server.user_dn("dora"), server.user_dn("no-such-person")):
        code, _, described = ldappasswd_for(
            server, lab.person("frank"), target, "Stolen-Password-123"
        )
        assert code == INSUFFICIENT_ACCESS, described
    assert whoami(server, lab.person("dora")) == server.user_dn("dora").lower()
    stolen = Credentials(server.user_dn("dora"), "Stolen-Password-123")
    assert whoami(server, stolen) is None


def test_a_reset_password_grant_scoped_to_a_group_covers_only_its_members(lab: Lab) -> None:
    server = lab.server
    inside, _, described = ldappasswd_for(
        server, lab.person("gina"), server.user_dn("hank"), "hank-Reset-Password-2"
    )
    assert inside == SUCCESS, described
    assert whoami(server, Credentials(server.user_dn("hank"), "hank-Reset-Password-2"))
    outside, _, described = ldappasswd_for(
        server, lab.person("gina"), server.user_dn("frank"), "frank-Reset-Password-2"
    )
    assert outside == INSUFFICIENT_ACCESS, described
    assert whoami(server, lab.person("frank")) == server.user_dn("frank").lower()
    server.ctl("user", "set-password", "hank", "--password-stdin", stdin=password_of("hank"))


# ------------------------------------------------------------------ disabled people

LOCK_ATTRIBUTES = ("pwdaccountlockedtime", "nsaccountlock")


def lock_attributes(conn: SimpleLDAPObject, dn: str, requested: list[str]) -> dict[str, set[str]]:
    found = attributes_of(conn, dn, requested)
    assert dn.lower() in found, f"{dn} not visible"
    return {k: v for k, v in found[dn.lower()].items() if k in LOCK_ATTRIBUTES}


def test_a_disabled_person_cannot_bind_even_with_the_right_password_until_enabled(
    lab: Lab,
) -> None:
    server = lab.server
    server.add_user("kate", password_of("kate"))
    kate = lab.person("kate")
    assert whoami(server, kate) == kate.dn.lower()
    server.ctl("user", "disable", "kate")
    assert whoami(server, kate) is None
    with pytest.raises(ldap.INVALID_CREDENTIALS), bound(server, kate):
        pass
    server.ctl("user", "enable", "kate")
    assert whoami(server, kate) == kate.dn.lower()


def test_lock_attributes_of_a_disabled_person_are_shown_to_full_directory_searchers_only(
    lab: Lab,
) -> None:
    server = lab.server
    full = lab.service_account("sa-lock-full")
    server.add_full_directory_reader("sa-lock-full", group="lock-readers")
    scoped = lab.service_account("sa-lock-scoped")
    server.grant("search", user="sa-lock-scoped", scope="team")
    server.add_user("liam", password_of("liam"))
    server.ctl("group", "add-member", "team", "liam")
    dn = server.user_dn("liam")
    server.ctl("user", "disable", "liam")
    try:
        for requested in (["+"], ["pwdAccountLockedTime", "nsAccountLock"], ["*", "+"]):
            with bound(server, full) as conn:
                assert lock_attributes(conn, dn, requested) == {
                    "pwdaccountlockedtime": {"000001010000z"},
                    "nsaccountlock": {"true"},
                }, requested
            with bound(server, scoped) as conn:
                assert lock_attributes(conn, dn, requested) == {}, requested
    finally:
        server.ctl("user", "enable", "liam")
    with bound(server, full) as conn:
        assert lock_attributes(conn, dn, ["+"]) == {}
    assert whoami(server, lab.person("liam")) == dn.lower()


def test_a_full_directory_searcher_finds_disabled_people_by_their_lock_attributes(
    lab: Lab,
) -> None:
    server = lab.server
    full = lab.service_account("sa-lock-filter")
    server.add_full_directory_reader("sa-lock-filter", group="lock-filter-readers")
    server.add_user("mike", password_of("mike"))
    server.ctl("user", "disable", "mike")
    try:
        with bound(server, full) as conn:
            for filter_ in ("(nsAccountLock=TRUE)", "(pwdAccountLockedTime=*)"):
                found = search(conn, f"ou=users,{server.base_dn}", "one", filter_)
                assert found.dns == {server.user_dn("mike").lower()}, filter_
    finally:
        server.ctl("user", "enable", "mike")


# ---------------------------------------------------------------- TLS requirements


def test_with_tls_required_for_binds_a_plain_bind_answers_13_and_a_starttls_bind_succeeds(
    tmp_path: Path,
) -> None:
    settings = {"security": {"require_tls_for_binds": "always"}}
    with serving("sqlite", tmp_path, settings=settings) as server:
        server.add_user("mona", password_of("mona"))
        mona = Credentials(server.user_dn("mona"), password_of("mona"))

        plain = ldapwhoami(server, bind=mona)
        assert plain.returncode == CONFIDENTIALITY_REQUIRED, plain.describe()
        starttls = ldapwhoami(server, bind=mona, start_tls=True)
        assert starttls.returncode == SUCCESS, starttls.describe()
        assert starttls.stdout.strip().lower() == f"dn:{mona.dn}".lower()
        ldaps = ldapwhoami(server, bind=mona, url=server.ldaps_url)
        assert ldaps.returncode == SUCCESS, ldaps.describe()
        anonymous = ldapwhoami(server)
        assert anonymous.returncode == SUCCESS, anonymous.describe()

        conn = connect(server)
        try:
            with pytest.raises(ldap.CONFIDENTIALITY_REQUIRED):
                conn.simple_bind_s(mona.dn, mona.password)
            conn.start_tls_s()
            conn.simple_bind_s(mona.dn, mona.password)
            assert conn.whoami_s().lower() == f"dn:{mona.dn}".lower()
        finally:
            conn.unbind_s()


def test_with_tls_required_for_searches_a_plain_search_answers_13_but_the_root_dse_is_read(
    tmp_path: Path,
) -> None:
    settings = {"security": {"require_tls_for_searches": "always"}}
    with serving("sqlite", tmp_path, settings=settings) as server:
        server.add_user("nina", password_of("nina"))
        nina = Credentials(server.user_dn("nina"), password_of("nina"))

        plain = ldapsearch(server, server.base_dn, "(uid=nina)", ["uid"], bind=nina)
        assert plain.result.returncode == CONFIDENTIALITY_REQUIRED, plain.result.describe()
        assert plain.dns == []
        root = ldapsearch(server, "", "(objectClass=*)", ["namingContexts"], scope="base")
        assert root.result.returncode == SUCCESS, root.result.describe()
        assert root.dns == [""]
        tls = ldapsearch(server, server.base_dn, "(uid=nina)", ["uid"], bind=nina, start_tls=True)
        assert tls.result.returncode == SUCCESS, tls.result.describe()
        assert [dn.lower() for dn in tls.dns] == [nina.dn.lower()]


def test_with_tls_required_for_searches_a_plain_compare_answers_13(tmp_path: Path) -> None:
    settings = {"security": {"require_tls_for_searches": "always"}}
    with serving("sqlite", tmp_path, settings=settings) as server:
        server.add_user("olga", password_of("olga"))
        olga = Credentials(server.user_dn("olga"), password_of("olga"))
        conn = connect(server)
        try:
            conn.simple_bind_s(olga.dn, olga.password)
            with pytest.raises(ldap.CONFIDENTIALITY_REQUIRED):
                conn.compare_s(olga.dn, "uid", b"olga")
        finally:
            conn.unbind_s()
