"""``[database] replica_url``: searches read the replica, everything else the primary.

The "replica" here is a second PostgreSQL database whose contents differ on purpose,
so where each operation read is visible in its answer: alice has a password only in
the primary, yet binds (binds use the primary); her search lists the replica's
people, not the primary's; the control socket lists the primary's.
"""

from __future__ import annotations

from pathlib import Path

from e2e.clients import ALICE_PASSWORD
from e2e.harness import fresh_database, start_server
from e2e.wire import WireClient


def test_searches_read_the_replica_while_binds_and_writes_use_the_primary(
    tmp_path: Path,
) -> None:
    with (
        fresh_database("postgresql", tmp_path / "primary") as primary,
        fresh_database("postgresql", tmp_path / "replica") as replica,
    ):
        seeding = start_server(tmp_path / "seed", replica)
        try:
            seeding.add_user("alice")  # no password: a bind read here would fail
            seeding.add_full_directory_reader("alice")
            seeding.add_user("only-in-replica")
        finally:
            seeding.stop()
        server = start_server(
            tmp_path / "server", primary, settings={"database": {"replica_url": replica}}
        )
        try:
            server.add_user("alice", ALICE_PASSWORD)  # writes go to the primary
            server.add_full_directory_reader("alice")
            server.add_user("only-in-primary")
            with WireClient(server.host, server.ldap_port) as client:
                assert client.bind(server.user_dn("alice"), ALICE_PASSWORD).code == 0
                found = client.search(server.base_dn, "(objectClass=posixAccount)")
            assert found.code == 0
            names = {bytes(e.objectName).decode() for e in found.entries}
            assert names == {server.user_dn("alice"), server.user_dn("only-in-replica")}
            listed = {u["name"] for u in server.ctl_json("user", "list")["users"]}
            assert {"alice", "only-in-primary"} <= listed
            assert "only-in-replica" not in listed
        finally:
            server.stop()
