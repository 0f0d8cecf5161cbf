"""Serve the control socket: a Unix socket that only the server's admins can open.

Three things make it safe to put on disk:

- It is born with its final mode. Twisted binds with the process umask and
  only then chmods to the requested mode, which leaves a window at 0666 minus
  umask; we narrow the umask around the bind so the kernel creates the file
  with at most the configured permissions. (The umask is process-wide, but it
  is only ever narrowed, and only for the duration of one bind.)
- One server per path. A lock file (``<socket>.lock``, flock) is held for as
  long as the socket is served and removed at shutdown; the kernel drops the
  lock when the process dies, so a crash leaves stale files but never a stale
  lock. A second server
  on the same path fails with a clear message instead of stealing the socket,
  and a leftover socket file is only removed while we hold the lock and after
  checking that nothing answers on it.
- The socket file is removed when the port stops (Twisted's UNIX port unlinks
  it in connectionLost, which also runs at reactor shutdown).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Protocol, cast

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ldapsrv.admin.commands import build_registry
from ldapsrv.admin.context import AdminContext
from ldapsrv.admin.protocol import MAX_REQUEST_BYTES, ControlFactory
from ldapsrv.admin.registry import CommandRegistry

log = Logger()

# sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH_BYTES = 107


class UnixReactor(Protocol):
    """The part of ``IReactorUNIX`` we use, typed for mypy (zope interfaces are not)."""

    def listenUNIX(
        self, address: str, factory: Factory, backlog: int = 50, mode: int = 0o666
    ) -> IListeningPort: ...


class _Stoppable(Protocol):
    def stopListening(self) -> Deferred[None] | None: ...


class ControlSocketError(Exception):
    """The control socket cannot be served; the message says why and what to do."""


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def listen_control_socket(
    reactor: UnixReactor,
    path: Path,
    mode: int,
    context: AdminContext,
    *,
    registry: CommandRegistry | None = None,
    max_request_bytes: int = MAX_REQUEST_BYTES,
) -> IListeningPort:
    """Listen on ``path`` with permissions ``mode``; raises ControlSocketError.

    ``registry`` defaults to every command the server knows
    (``ldapsrv.admin.commands.build_registry``). Call from the reactor thread
    before or after ``reactor.run``; the only blocking work is a local
    ``connect`` probe of a leftover socket file.
    """
    path = Path(path)
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH_BYTES:
        raise ControlSocketError(
            f"control socket path {path} is longer than {_MAX_SOCKET_PATH_BYTES} bytes "
            "(the Unix socket limit); choose a shorter server.control_socket"
        )
    _ensure_parent(path.parent)
    factory = _LockedControlFactory(
        registry if registry is not None else build_registry(),
        context,
        max_request_bytes,
        _acquire_lock(path),
    )
    try:
        _remove_stale_socket(path)
        with _umask_allowing(mode):
            port = reactor.listenUNIX(str(path), factory, mode=mode)
    except CannotListenError as exc:
        factory.release_lock()
        raise ControlSocketError(
            f"cannot listen on control socket {path}: {exc.socketError}"
        ) from exc
    except BaseException:
        factory.release_lock()
        raise
    log.info("control socket listening on {path} (mode {mode})", path=str(path), mode=f"{mode:04o}")
    return port


class ControlSocketService(Service):
    """The control socket as a Twisted service, for service.py's MultiService."""

    def __init__(self, reactor: UnixReactor, path: Path, mode: int, context: AdminContext):
        self._reactor = reactor
        self._path = path
        self._mode = mode
        self._context = context
        self._port: _Stoppable | None = None

    def startService(self) -> None:
        # Listen first: if it fails, the service must not count as running.
        port = listen_control_socket(self._reactor, self._path, self._mode, self._context)
        self._port = cast(_Stoppable, port)
        super().startService()  # type: ignore[no-untyped-call]

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        port, self._port = self._port, None
        stopped = port.stopListening() if port is not None else None
        return stopped if stopped is not None else succeed(None)


class _LockedControlFactory(ControlFactory):
    """A ControlFactory that owns the path's lock until its port stops."""

    def __init__(
        self,
        registry: CommandRegistry,
        context: AdminContext,
        max_request_bytes: int,
        lock: tuple[Path, int],
    ) -> None:
        super().__init__(registry, context, max_request_bytes)
        self._lock_path = lock[0]
        self._lock_fd: int | None = lock[1]

    def stopFactory(self) -> None:
        self.release_lock()

    def release_lock(self) -> None:
        """Remove the lock file while still holding it, then drop the lock."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with suppress(OSError):
                os.unlink(self._lock_path)
            os.close(fd)  # closing the only descriptor drops the flock


def _ensure_parent(directory: Path) -> None:
    """Create the socket's directory private to the server (0700) if missing.

    An existing directory keeps its mode: the admin chose it.
    """
    if directory.is_dir():
        return
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    except OSError as exc:
        raise ControlSocketError(
            f"cannot create the control socket directory {directory}: {exc.strerror}"
        ) from exc


def _acquire_lock(path: Path) -> tuple[Path, int]:
    """Hold ``<socket>.lock`` exclusively; returns its path and descriptor.

    The file is removed at shutdown, so after locking we check that the path
    still names the file we locked: a server that opened the file just before
    its previous owner removed it would otherwise lock an orphan and run
    alongside the next server.
    """
    lock = lock_path(path)
    for _ in range(10):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ControlSocketError(f"cannot open lock file {lock}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise ControlSocketError(
                    f"another ldapsrv server is already running on control socket {path} "
                    f"(it holds {lock}); stop it, or give this one another "
                    "server.control_socket"
                ) from None
            raise ControlSocketError(f"cannot lock {lock}: {exc.strerror}") from exc
        try:
            current = os.stat(lock)
        except FileNotFoundError:
            current = None
        locked = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (
            locked.st_dev,
            locked.st_ino,
        ):
            return lock, fd
        os.close(fd)  # the previous owner removed it meanwhile: lock the new one
    raise ControlSocketError(f"cannot lock {lock}: it keeps being replaced")


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by a server that died, never a live one's."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlSocketError(
            f"{path} exists and is not a socket; refusing to replace it "
            "(remove it or choose another server.control_socket)"
        )
    if _answers(path):
        raise ControlSocketError(
            f"another server is already answering on control socket {path}; "
            "stop it, or give this one another server.control_socket"
        )
    os.unlink(path)
    log.info("removed stale control socket {path}", path=str(path))


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except TimeoutError:
        return True  # a live server with a full backlog
    except OSError as exc:
        raise ControlSocketError(
            f"cannot tell whether control socket {path} is in use: {exc.strerror}"
        ) from exc
    finally:
        probe.close()
    return True


@contextmanager
def _umask_allowing(mode: int) -> Iterator[None]:
    """Mask every permission bit that ``mode`` does not grant, then restore."""
    previous = os.umask(0o777 & ~mode)
    try:
        yield
    finally:
        os.umask(previous)
