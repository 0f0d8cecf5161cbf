"""The supervisor's pieces that need no processes: binding the shared ports, the
hidden worker flag, how a worker's end is described."""

from __future__ import annotations

import socket

import pytest
from twisted.internet.error import ProcessTerminated
from twisted.python.failure import Failure

from ldapsrv.config import load_config
from ldapsrv.workers import ListenError, bind_listeners, describe_exit, worker_fds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_supervisor_binds_both_listeners_non_blocking() -> None:
    plain, secure = free_port(), free_port()
    config = load_config(
        None,
        {"server.listen": f"127.0.0.1:{plain}", "server.ldaps_listen": f"127.0.0.1:{secure}"},
        environ={},
    )
    sockets = bind_listeners(config)
    try:
        assert {name: s.getsockname()[1] for name, s in sockets.items()} == {
            "ldap": plain,
            "ldaps": secure,
        }
        assert all(not s.getblocking() for s in sockets.values())
        with socket.create_connection(("127.0.0.1", plain), timeout=2):
            pass  # the kernel queues it: a worker will accept it
    finally:
        for sock in sockets.values():
            sock.close()


def test_a_port_in_use_is_named_and_nothing_stays_bound() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        plain = free_port()
        config = load_config(
            None,
            {"server.listen": f"127.0.0.1:{plain}", "server.ldaps_listen": f"127.0.0.1:{busy}"},
            environ={},
        )
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{busy}"):
            bind_listeners(config)
    with socket.socket() as again:
        again.bind(("127.0.0.1", plain))  # released after the failure


def test_worker_flag() -> None:
    assert worker_fds("ldap=3,ldaps=4") == {"ldap": 3, "ldaps": 4}
    assert worker_fds("ldaps=4") == {"ldaps": 4}
    with pytest.raises(ValueError, match="--worker-fds"):
        worker_fds("ldap=x")


def test_how_a_worker_ended_is_described() -> None:
    assert describe_exit(Failure(ProcessTerminated(signal=9))) == "was killed by signal 9"
    assert describe_exit(Failure(ProcessTerminated(exitCode=3))) == "exited with status 3"
