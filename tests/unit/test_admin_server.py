"""Putting the control socket on disk: mode from birth, one server per path, stale files.

A recording reactor binds real Unix sockets exactly as Twisted does (bind, then
chmod) and notes the file's mode right after bind, which is the window a
default-umask bind would leave open.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.protocol import Factory

from ldapsrv.admin.context import AdminContext
from ldapsrv.admin.server import ControlSocketError, listen_control_socket, lock_path
from ldapsrv.admin.testing import in_memory_context
from ldapsrv.config import load_config


class FakePort:
    def __init__(self, sock: socket.socket, path: str, factory: Factory) -> None:
        self.sock, self.path, self.factory = sock, path, factory

    def stopListening(self) -> None:
        # What twisted.internet.unix.Port.connectionLost does.
        self.sock.close()
        os.unlink(self.path)
        self.factory.doStop()


class RecordingReactor:
    def __init__(self) -> None:
        self.mode_at_bind: int | None = None
        self.requested_mode: int | None = None
        self.ports: list[FakePort] = []

    def listenUNIX(
        self, address: str, factory: Factory, backlog: int = 50, mode: int = 0o666
    ) -> FakePort:
        self.requested_mode = mode
        factory.doStart()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(address)
        self.mode_at_bind = stat.S_IMODE(os.stat(address).st_mode)
        os.chmod(address, mode)
        sock.listen(backlog)
        port = FakePort(sock, address, factory)
        self.ports.append(port)
        return port

    def stop_all(self) -> None:
        for port in self.ports:
            if port.sock.fileno() != -1:
                port.stopListening()


@pytest.fixture
def reactor() -> Iterator[RecordingReactor]:
    made = RecordingReactor()
    yield made
    made.stop_all()


@pytest.fixture
def context() -> AdminContext:
    return in_memory_context(load_config(None, environ={}))


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "control.sock"


def listen(reactor: Any, path: Path, context: AdminContext, mode: int = 0o600) -> Any:
    return listen_control_socket(reactor, path, mode, context)


def stale_socket(path: Path) -> None:
    """A socket file nobody listens on: what a killed server leaves behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()


@pytest.mark.parametrize("mode", [0o600, 0o660])
def test_the_socket_is_born_with_the_configured_mode(
    reactor: RecordingReactor, context: AdminContext, sock_path: Path, mode: int
) -> None:
    previous = os.umask(0o022)  # the usual default, which would give 0755 at bind
    try:
        listen(reactor, sock_path, context, mode)
    finally:
        os.umask(previous)
    assert reactor.mode_at_bind == mode, "no window at a wider mode between bind and chmod"
    assert reactor.requested_mode == mode
    assert stat.S_IMODE(os.stat(sock_path).st_mode) == mode


def test_the_umask_is_restored_after_listening(
    reactor: RecordingReactor, context: AdminContext, sock_path: Path
) -> None:
    previous = os.umask(0o027)
    try:
        listen(reactor, sock_path, context)
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(previous)


def test_a_missing_parent_directory_is_created_private(
    reactor: RecordingReactor, context: AdminContext, tmp_path: Path
) -> None:
    path = tmp_path / "a" / "b" / "control.sock"
    listen(reactor, path, context)
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_an_existing_parent_directory_keeps_its_mode(
    reactor: RecordingReactor, context: AdminContext, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)
    listen(reactor, tmp_path / "control.sock", context)
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) == 0o755


def test_a_stale_socket_file_is_replaced(
    reactor: RecordingReactor, context: AdminContext, sock_path: Path
) -> None:
    stale_socket(sock_path)
    listen(reactor, sock_path, context)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(str(sock_path))  # the new socket, not the dead one
    finally:
        client.close()


def test_a_live_server_on_the_path_is_not_replaced(
    reactor: RecordingReactor, context: AdminContext, sock_path: Path
) -> None:
    sock_path.parent.mkdir(parents=True)
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(sock_path))
    live.listen(1)
    try:
        with pytest.raises(ControlSocketError, match="already answering"):
            listen(reactor, sock_path, context)
        assert sock_path.exists()
    finally:
        live.close()
    # Refusing must not keep the lock: once the other one is gone we can start.
    listen(reactor, sock_path, context)


def test_a_second_server_on_the_same_path_is_refused_with_a_clear_message(
    reactor: RecordingReactor, context: AdminContext, sock_path: Path
) -> None:
    listen(reactor, sock_path, context)
    with pytest.raises(ControlSocketError, match="another ldapsrv server is already running"):
        listen(reactor, sock_path, context)
    assert len(reactor.ports) == 1


def test_stopping_the_port_releases_the_path_for_the_next_server(
    reactor: RecordingReactor, context: AdminContext, sock_path: Path
) -> None:
    port = listen(reactor, sock_path, context)
    assert lock_path(sock_path).exists()
    port.stopListening()
    assert not sock_path.exists()
    assert not lock_path(sock_path).exists()
    listen(reactor, sock_path, context)


def test_a_lock_file_left_by_a_crashed_server_does_not_block_the_next(
    reactor: RecordingReactor, context: AdminContext, sock_path: Path
) -> None:
    stale_socket(sock_path)
    lock_path(sock_path).write_text("")
    listen(reactor, sock_path, context)


def test_a_lock_file_removed_while_we_lock_it_is_not_trusted(
    reactor: RecordingReactor,
    context: AdminContext,
    sock_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The previous owner may remove the lock file between our open and our
    flock; locking that orphan would let a third server start beside us."""
    import fcntl

    from ldapsrv.admin import server

    real_flock = fcntl.flock
    removed: list[bool] = []

    def flock_after_removal(fd: int, operation: int) -> None:
        if not removed:
            removed.append(True)
            os.unlink(lock_path(sock_path))  # the previous owner shutting down
        real_flock(fd, operation)

    monkeypatch.setattr(server.fcntl, "flock", flock_after_removal)
    sock_path.parent.mkdir(parents=True)
    lock_path(sock_path).write_text("")
    listen(reactor, sock_path, context)
    monkeypatch.setattr(server.fcntl, "flock", real_flock)
    assert removed
    with pytest.raises(ControlSocketError, match="already running"):
        listen(reactor, sock_path, context)  # the lock we hold is the file on disk


def test_a_regular_file_at_the_path_is_never_removed(
    reactor: RecordingReactor, context: AdminContext, sock_path: Path
) -> None:
    sock_path.parent.mkdir(parents=True)
    sock_path.write_text("important")
    with pytest.raises(ControlSocketError, match="is not a socket"):
        listen(reactor, sock_path, context)
    assert sock_path.read_text() == "important"


def test_a_path_too_long_for_a_unix_socket_is_refused_up_front(
    reactor: RecordingReactor, context: AdminContext, tmp_path: Path
) -> None:
    with pytest.raises(ControlSocketError, match="longer than 107 bytes"):
        listen(reactor, tmp_path / ("x" * 120) / "control.sock", context)
