"""Moving from a real OpenLDAP: slapd holds people with {SSHA} and {CRYPT} ($6$,
$1$) passwords made by slappasswd, posixGroup and groupOfNames groups; slapcat
exports it, ``ldapsrv import`` loads the export, and the people then bind through
ldapsrv with ldapwhoami; their hashes become bcrypt on the first bind. A second
import changes nothing, and export -> import -> export gives the same LDIF.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from e2e.clients import SUCCESS, Credentials, ldapwhoami
from e2e.harness import (
    BACKENDS,
    LDAPSRV_COMMAND,
    LOOPBACK,
    LdapServer,
    free_ports,
    fresh_database,
    hermetic_env,
    ldap_client_env,
    require_service,
    run_tool,
    start_server,
    stop_process,
)
from ldapsrv.store.models import accounts, audit_events

SOURCE_BASE = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SOURCE_BASE}"
ROOT_PASSWORD = "slapd-root-secret"
PASSWORDS = {"alice": "alice-from-openldap", "bob": "bob-crypt-six", "carol": "carol-md5-crypt"}
# slappasswd options per person: {SSHA}, {CRYPT} with SHA-512 crypt, {CRYPT} with MD5-crypt
HASH_OPTIONS = {
    "alice": ["-h", "{SSHA}"],
    "bob": ["-c", "$6$%.16s"],
    "carol": ["-c", "$1$%.8s"],
}
NUMBERS = {"alice": 2001, "bob": 2002, "carol": 2003}

SLAPD_CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile {dir}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
suffix "{base}"
rootdn "{root}"
rootpw {password}
directory {dir}/db
maxsize 10485760
"""


def _slappasswd(password: str, options: list[str]) -> str:
    result = subprocess.run(
        ["slappasswd", *options, "-s", password],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


def _source_ldif() -> str:
    people = []
    for name, password in PASSWORDS.items():
        people.append(
            f"dn: uid={name},ou=people,{SOURCE_BASE}\n"
            "objectClass: inetOrgPerson\nobjectClass: posixAccount\nobjectClass: shadowAccount\n"
            f"uid: {name}\ncn: {name.title()} Example\nsn: Example\ngivenName: {name.title()}\n"
            f"mail: {name}@example.org\nuidNumber: {NUMBERS[name]}\ngidNumber: 5000\n"
            f"homeDirectory: /home/{name}\nloginShell: /bin/bash\n"
            f"userPassword: {_slappasswd(password, HASH_OPTIONS[name])}\n"
        )
    return "\n".join(
        [
            f"dn: {SOURCE_BASE}\nobjectClass: dcObject\nobjectClass: organization\n"
            "dc: example\no: Example\n",
            f"dn: ou=people,{SOURCE_BASE}\nobjectClass: organizationalUnit\nou: people\n",
            f"dn: ou=groups,{SOURCE_BASE}\nobjectClass: organizationalUnit\nou: groups\n",
            *people,
            f"dn: cn=staff,ou=groups,{SOURCE_BASE}\nobjectClass: posixGroup\ncn: staff\n"
            "gidNumber: 5000\nmemberUid: alice\nmemberUid: bob\nmemberUid: carol\n",
            f"dn: cn=admins,ou=groups,{SOURCE_BASE}\nobjectClass: groupOfNames\ncn: admins\n"
            f"member: uid=alice,ou=people,{SOURCE_BASE}\n",
        ]
    )


@pytest.fixture(scope="module")
def slapcat_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real slapd, filled over LDAP with ldapadd, exported with slapcat."""
    require_service("slapd")
    require_service("ldap-utils")
    workdir = tmp_path_factory.mktemp("slapd")
    (workdir / "db").mkdir()
    conf = workdir / "slapd.conf"
    conf.write_text(
        SLAPD_CONF.format(dir=workdir, base=SOURCE_BASE, root=ROOT_DN, password=ROOT_PASSWORD)
    )
    (port,) = free_ports(1)
    url = f"ldap://{LOOPBACK}:{port}/"
    process = subprocess.Popen(
        ["slapd", "-d", "0", "-f", str(conf), "-h", url],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        env = ldap_client_env(None)
        deadline = time.monotonic() + 30
        while True:
            probe = run_tool(["ldapsearch", "-x", "-H", url, "-b", "", "-s", "base"], env=env)
            if probe.returncode == SUCCESS:
                break
            assert process.poll() is None, "slapd exited at start"
            assert time.monotonic() < deadline, f"slapd not ready: {probe.describe()}"
            time.sleep(0.2)
        added = run_tool(
            ["ldapadd", "-x", "-H", url, "-D", ROOT_DN, "-w", ROOT_PASSWORD],
            env=env,
            stdin=_source_ldif(),
        )
        assert added.returncode == SUCCESS, added.describe()
        export = run_tool(["slapcat", "-f", str(conf), "-b", SOURCE_BASE])
        assert export.returncode == SUCCESS, export.describe()
    finally:
        stop_process(process)
    path = workdir / "openldap.ldif"
    path.write_text(export.stdout)
    assert "userPassword:: " in export.stdout  # slapcat writes hashes base64-encoded
    return path


def ldapsrv(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LDAPSRV_COMMAND, *args],
        input=stdin,
        cwd=cwd,
        env=hermetic_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def _stored_hash(url: str, name: str) -> str:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(
                conn.execute(select(accounts.c.password_hash).where(accounts.c.name == name))
                .scalar_one()
            )
    finally:
        engine.dispose()


def _audit_actions(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [str(a) for a in conn.execute(select(audit_events.c.action)).scalars()]
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def imported(
    request: pytest.FixtureRequest, slapcat_export: Path, tmp_path: Path
) -> Iterator[tuple[str, LdapServer]]:
    """The slapcat export imported into a fresh database, and a server on it."""
    with fresh_database(str(request.param), tmp_path) as url:
        _ok(ldapsrv("db", "upgrade", "--database", url, cwd=tmp_path))
        dry = _ok(ldapsrv("import", str(slapcat_export), "--database", url, "--dry-run",
                          cwd=tmp_path))  # fmt: skip
        assert "create    person alice" in dry and "dry run: nothing written" in dry
        assert "nothing to change" not in dry
        report = _ok(ldapsrv("import", str(slapcat_export), "--database", url, cwd=tmp_path))
        assert "create    person bob: password (CRYPT)" in report
        assert "create    membership admins/alice" in report
        server = start_server(tmp_path / "server", url)
        try:
            yield url, server
        finally:
            server.stop()


def test_openldap_people_bind_with_their_old_passwords_and_get_bcrypt(
    imported: tuple[str, LdapServer],
) -> None:
    url, server = imported
    assert _stored_hash(url, "alice").startswith("{SSHA}")
    assert _stored_hash(url, "bob").startswith("{CRYPT}$6$")
    assert _stored_hash(url, "carol").startswith("{CRYPT}$1$")
    for name, password in PASSWORDS.items():
        bind = Credentials(server.user_dn(name), password)
        wrong = ldapwhoami(server, bind=Credentials(bind.dn, password + "x"))
        assert wrong.returncode == 49, wrong.describe()
        first = ldapwhoami(server, bind=bind)
        assert first.returncode == SUCCESS, first.describe()
        assert _stored_hash(url, name).startswith("$bcrypt-sha256$")
        again = ldapwhoami(server, bind=bind)
        assert again.returncode == SUCCESS, again.describe()
    assert _audit_actions(url).count("user.upgrade_password_hash") == len(PASSWORDS)
    user = server.ctl_json("user", "show", "alice")
    assert (user["uid_number"], user["gid_number"]) == (2001, 5000)
    group = server.ctl_json("group", "show", "staff")
    assert group["gid_number"] == 5000
    assert sorted(group["members"]) == ["alice", "bob", "carol"]


def test_a_second_import_after_the_binds_changes_nothing(
    imported: tuple[str, LdapServer], slapcat_export: Path, tmp_path: Path
) -> None:
    url, server = imported
    bind = Credentials(server.user_dn("alice"), PASSWORDS["alice"])
    assert ldapwhoami(server, bind=bind).returncode == SUCCESS  # hash upgraded to bcrypt
    again = _ok(ldapsrv("import", str(slapcat_export), "--database", url, cwd=tmp_path))
    assert "nothing to change" in again
    assert _stored_hash(url, "alice").startswith("$bcrypt-sha256$")  # not downgraded
    # the allocator never hands out an imported number
    server.ctl("user", "add", "dave")
    assert server.ctl_json("user", "show", "dave")["uid_number"] not in NUMBERS.values()


def test_export_import_export_round_trip_is_identical(
    imported: tuple[str, LdapServer], tmp_path: Path
) -> None:
    url, server = imported
    server.ctl("user", "disable", "carol")  # exported as nsAccountLock, imported back
    first = tmp_path / "first.ldif"
    _ok(ldapsrv("export", "--database", url, "-o", str(first), cwd=tmp_path))
    text = first.read_text()
    assert "userPassword" not in text
    assert "dn: cn=alice,ou=users,dc=example,dc=org" in text
    with_hashes = _ok(ldapsrv("export", "--database", url, "--with-password-hashes",
                              cwd=tmp_path))  # fmt: skip
    assert "userPassword: {SSHA}" in with_hashes
    with fresh_database("sqlite", tmp_path / "second") as second_url:
        (tmp_path / "second").mkdir(exist_ok=True)
        _ok(ldapsrv("db", "upgrade", "--database", second_url, cwd=tmp_path))
        _ok(ldapsrv("import", "-", "--database", second_url, cwd=tmp_path, stdin=text))
        again = _ok(ldapsrv("export", "--database", second_url, cwd=tmp_path))
    assert "nsAccountLock: TRUE" in text
    assert again == text


def test_a_faulty_file_is_refused_whole_with_each_entry_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ldapsrv.sqlite3'}"
    _ok(ldapsrv("db", "upgrade", "--database", url, cwd=tmp_path))
    faulty = tmp_path / "faulty.ldif"
    faulty.write_text(
        "dn: uid=fine,ou=people,dc=x\nobjectClass: posixAccount\nuid: fine\nuidNumber: 7\n\n"
        "dn: uid=bad name,ou=people,dc=x\nobjectClass: posixAccount\nuid: bad name\n\n"
        "dn: cn=g,ou=groups,dc=x\nobjectClass: posixGroup\ncn: g\ngidNumber: many\n"
    )
    result = ldapsrv("import", str(faulty), "--database", url, cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "nothing was written" in result.stderr
    assert "line 6 (uid=bad name,ou=people,dc=x): account name 'bad name'" in result.stderr
    assert "line 10 (cn=g,ou=groups,dc=x): gidNumber 'many' is not a number" in result.stderr
    export = _ok(ldapsrv("export", "--database", url, cwd=tmp_path))
    assert "uid=fine" not in export and "cn=fine" not in export
    missing = ldapsrv("import", str(tmp_path / "nope.ldif"), "--database", url, cwd=tmp_path)
    assert missing.returncode == 1 and "cannot read" in missing.stderr
