"""``ldapsrv import-csv`` while a server runs: people from a spreadsheet (one with
a {SSHA} hash, one with a bare $6$ from /etc/shadow) bind at once; groups come
from the groups column."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from e2e.clients import SUCCESS, Credentials, ldapwhoami
from e2e.harness import LDAPSRV_COMMAND, LdapServer, hermetic_env

SSHA = "{SSHA}qh6gZ8IO1fj3yWgCHw5RcgiCGytZFS5o"  # slappasswd -s 'correct horse'
SHA512_CRYPT = (  # openssl passwd -6 'correct horse'
    "$6$t6fEEqV6Zhi0bgmo$KDQ0id9Uk7bdEAkRXKQVsgGMUWO8geJaGdPPFmJyBmcslM7r2UlPUJpbDnvSJlXvOiZu"
    "Ngjdee.gkztogttlA1"
)


def test_csv_people_bind_and_their_groups_exist(
    ldap_server_factory: Callable[..., LdapServer], tmp_path: Path
) -> None:
    server = ldap_server_factory()
    sheet = tmp_path / "people.csv"
    sheet.write_text(
        "uid,cn,mail,uidNumber,groups,password_hash\n"
        f"erin,Erin Example,erin@example.org,4100,staff;nas-users,{SSHA}\n"
        f"frank,Frank Example,,,staff,{SHA512_CRYPT}\n"
    )

    def import_csv(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*LDAPSRV_COMMAND, "import-csv", str(sheet), "--database", server.database_url,
             *extra],
            capture_output=True, text=True, timeout=120, env=hermetic_env(), cwd=tmp_path,
            check=False,
        )  # fmt: skip

    result = import_csv()
    assert result.returncode == 0, result.stderr
    assert "create    membership nas-users/erin" in result.stdout
    for name in ("erin", "frank"):
        bind = Credentials(server.user_dn(name), "correct horse")
        outcome = ldapwhoami(server, bind=bind)
        assert outcome.returncode == SUCCESS, outcome.describe()
    assert server.ctl_json("user", "show", "erin")["uid_number"] == 4100
    assert sorted(server.ctl_json("group", "show", "staff")["members"]) == ["erin", "frank"]
    again = import_csv("--dry-run")
    assert again.returncode == 0 and "nothing to change" in again.stdout
