"""OpenLDAP's slapd with the same data, for side-by-side figures.

A throwaway slapd.conf (mdb backend, equality indexes on what the scenarios
search), the entries loaded with ``slapadd``, slapd started on a free loopback
port in the foreground and stopped by PID. Schema: core, cosine, inetorgperson
and ``slapd/rfc2307bis-lite.schema`` (posixGroup auxiliary, so a group carries
``member`` and ``memberUid`` like ldapsrv's). Passwords are ``{SSHA}`` (slapd's
usual scheme; one salted SHA-1, far cheaper than bcrypt). The service accounts
bind with a password of the same shape as an ldapsrv token. ACLs mirror
ldapsrv's grants: the full reader reads everything, the scoped reader its scope
group, that group's members (a ``set`` ACL) and itself.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.dataset import (
    BASE_DN,
    FULL_READER,
    GROUPS_DN,
    PRIMARY_GID,
    PRIMARY_GROUP,
    SCOPE_GROUP,
    SCOPED_READER,
    USERS_DN,
    DataSet,
)
from bench.ldapsrv_target import Secrets
from bench.processes import LOOPBACK, ServerProcess, free_port, pinned, run_checked, start_process

SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
HERE = Path(__file__).resolve().parent


def slapd_path() -> str | None:
    """Where slapd is (also in /usr/sbin when that is not on PATH), or None."""
    return shutil.which("slapd") or shutil.which("slapd", path="/usr/sbin:/usr/local/sbin")


def slapd_version() -> str:
    path = slapd_path()
    if path is None:
        return "not installed"
    result = subprocess.run([path, "-VV"], capture_output=True, text=True, timeout=10, check=False)
    first = (result.stderr or result.stdout).strip().splitlines()
    return first[0].strip() if first else "unknown"


def ssha(password: str) -> str:
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _dn(name: str) -> str:
    return f"cn={name},{USERS_DN}"


def slapd_conf(workdir: Path) -> str:
    full, scoped = _dn(FULL_READER), _dn(SCOPED_READER)
    scope = f"cn={SCOPE_GROUP},{GROUPS_DN}"
    schemas = [SCHEMA_DIR / f"{n}.schema" for n in ("core", "cosine", "inetorgperson")]
    schemas.append(HERE / "slapd" / "rfc2307bis-lite.schema")
    includes = "\n".join(f"include {path}" for path in schemas)
    module = f"modulepath {MODULE_DIR}\nmoduleload back_mdb" if MODULE_DIR.exists() else ""
    return f"""{includes}
pidfile {workdir}/slapd.pid
argsfile {workdir}/slapd.args
{module}
loglevel 0
sizelimit unlimited

database mdb
maxsize 4294967296
suffix "{BASE_DN}"
rootdn "cn=admin,{BASE_DN}"
directory {workdir}/db
index objectClass eq
index uid eq
index cn eq
index member eq
index memberUid eq
index uidNumber eq
index gidNumber eq

access to attrs=userPassword
    by anonymous auth
    by * none
access to dn.base="{scope}"
    by dn.exact="{full}" read
    by dn.exact="{scoped}" read
    by * none
access to dn.one="{USERS_DN}"
    by dn.exact="{full}" read
    by self read
    by dn.exact="{scoped}" set="[{scope}]/member & this" read
    by * none
access to dn.one="{GROUPS_DN}"
    by dn.exact="{full}" read
    by * none
access to *
    by dn.exact="{full}" read
    by dn.exact="{scoped}" read
    by * none
"""


def _entry(dn: str, attributes: list[tuple[str, str]]) -> str:
    return "\n".join([f"dn: {dn}", *(f"{name}: {value}" for name, value in attributes)]) + "\n\n"


def ldif(data: DataSet, secrets_: Secrets) -> Iterator[str]:
    """Every entry of the benchmark directory as LDIF."""
    yield _entry(
        BASE_DN,
        [
            ("objectClass", "dcObject"),
            ("objectClass", "organization"),
            ("dc", "example"),
            ("o", "example"),
        ],
    )
    for ou in ("users", "groups"):
        yield _entry(f"ou={ou},{BASE_DN}", [("objectClass", "organizationalUnit"), ("ou", ou)])
    person_hash = ssha(data.password)
    for person in data.people:
        yield _entry(
            person.dn,
            [
                ("objectClass", "inetOrgPerson"),
                ("objectClass", "posixAccount"),
                ("cn", person.name),
                ("uid", person.name),
                ("sn", person.surname),
                ("givenName", person.given_name),
                ("displayName", person.display_name),
                ("mail", person.mail),
                ("uidNumber", str(person.uid_number)),
                ("gidNumber", str(PRIMARY_GID)),
                ("homeDirectory", f"/home/{person.name}"),
                ("loginShell", "/bin/bash"),
                ("userPassword", person_hash),
            ],
        )
    for name, password in (
        (FULL_READER, secrets_.full_token),
        (SCOPED_READER, secrets_.scoped_token),
    ):
        yield _entry(
            _dn(name),
            [
                ("objectClass", "applicationProcess"),
                ("objectClass", "uidObject"),
                ("objectClass", "simpleSecurityObject"),
                ("cn", name),
                ("uid", name),
                ("userPassword", ssha(password)),
            ],
        )
    yield _entry(
        f"cn={PRIMARY_GROUP},{GROUPS_DN}",
        [
            ("objectClass", "groupOfNames"),
            ("objectClass", "posixGroup"),
            ("cn", PRIMARY_GROUP),
            ("gidNumber", str(PRIMARY_GID)),
            ("member", ""),
        ],
    )
    for group in data.groups:
        members = [data.people[m] for m in group.members]
        yield _entry(
            group.dn,
            [
                ("objectClass", "groupOfNames"),
                ("objectClass", "posixGroup"),
                ("cn", group.name),
                ("gidNumber", str(group.gid_number)),
                *(("member", p.dn) for p in members),
                *(("memberUid", p.name) for p in members),
            ],
        )


def slapd_secrets() -> Secrets:
    """Passwords for slapd's service accounts, shaped like ldapsrv tokens (62 characters)."""
    return Secrets(
        full_token="ldsrv_" + secrets.token_urlsafe(42)[:56],
        scoped_token="ldsrv_" + secrets.token_urlsafe(42)[:56],
    )


def start_slapd(data: DataSet, cpus: tuple[int, ...] = ()) -> tuple[ServerProcess, Secrets]:
    path = slapd_path()
    if path is None:
        raise RuntimeError("slapd is not installed")
    slapadd = shutil.which("slapadd") or shutil.which("slapadd", path="/usr/sbin")
    if slapadd is None:
        raise RuntimeError("slapadd is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="slapd-bench-"))
    try:
        return _start_in(workdir, path, slapadd, data, cpus)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


def _start_in(
    workdir: Path, path: str, slapadd: str, data: DataSet, cpus: tuple[int, ...]
) -> tuple[ServerProcess, Secrets]:
    (workdir / "db").mkdir()
    conf = workdir / "slapd.conf"
    conf.write_text(slapd_conf(workdir))
    secrets_ = slapd_secrets()
    with (workdir / "data.ldif").open("w") as out:
        out.writelines(ldif(data, secrets_))
    run_checked(
        [slapadd, "-q", "-f", str(conf), "-l", str(workdir / "data.ldif")], "slapadd", cwd=workdir
    )
    port = free_port()
    argv = pinned([path, "-d", "0", "-f", str(conf), "-h", f"ldap://{LOOPBACK}:{port}/"], cpus)
    server = start_process(
        "slapd", argv, workdir=workdir, host=LOOPBACK, port=port, env=dict(os.environ)
    )
    server.details = {
        "version": slapd_version(),
        "password_hashes": "{SSHA} (salted SHA-1)",
        "backend": "mdb",
    }
    return server, secrets_
