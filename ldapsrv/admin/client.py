"""A blocking control-socket client: one request, one response.

Plain ``socket`` and no Twisted, so the ``ldapsrv`` command starts fast and
any script can drive the server. Every failure is an ``AdminError``: the
server's own kinds, or ``unavailable`` when the server cannot be reached.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from ldapsrv.admin.errors import INTERNAL, UNAVAILABLE, AdminError

DEFAULT_TIMEOUT = 30.0


def call(
    path: Path | str,
    command: str,
    args: dict[str, Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """Run ``command`` on the server listening at ``path`` and return its result.

    ``timeout`` bounds the whole call (connect, send, wait for the answer).
    """
    path = Path(path)
    deadline = time.monotonic() + timeout
    request = json.dumps({"id": 1, "command": command, "args": args or {}}, ensure_ascii=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        _connect(sock, path)
        try:
            sock.sendall(request.encode("ascii") + b"\n")
            line = _read_line(sock, deadline)
        except TimeoutError:
            raise AdminError(
                UNAVAILABLE, f"no answer from the ldapsrv control socket at {path} in {timeout:g}s"
            ) from None
        except OSError as exc:
            raise AdminError(
                UNAVAILABLE, f"lost the connection to the control socket at {path}: {exc.strerror}"
            ) from None
    finally:
        sock.close()
    return _result(line, path)


def _connect(sock: socket.socket, path: Path) -> None:
    try:
        sock.connect(os.fspath(path))
    except (FileNotFoundError, ConnectionRefusedError):
        raise AdminError(
            UNAVAILABLE,
            f"cannot reach ldapsrv control socket at {path}: is the server running?",
        ) from None
    except PermissionError:
        raise AdminError(
            UNAVAILABLE,
            f"permission denied on the ldapsrv control socket at {path}: "
            "run as the user the server runs as (or root)",
        ) from None
    except TimeoutError:
        raise AdminError(UNAVAILABLE, f"timed out connecting to control socket {path}") from None
    except OSError as exc:
        raise AdminError(
            UNAVAILABLE, f"cannot reach ldapsrv control socket at {path}: {exc.strerror}"
        ) from None


def _read_line(sock: socket.socket, deadline: float) -> bytes:
    chunks: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise AdminError(
                UNAVAILABLE, "the server closed the control connection without answering"
            )
        newline = chunk.find(b"\n")
        if newline >= 0:
            chunks.append(chunk[:newline])
            return b"".join(chunks)
        chunks.append(chunk)


def _result(line: bytes, path: Path) -> Any:
    try:
        response = json.loads(line)
    except ValueError:
        raise AdminError(INTERNAL, f"the server at {path} answered with invalid JSON") from None
    if not isinstance(response, dict) or response.get("id") not in (1, None):
        raise AdminError(INTERNAL, f"the server at {path} answered with a malformed response")
    if response.get("ok") is True:
        return response.get("result")
    error = response.get("error")
    if not isinstance(error, dict):
        raise AdminError(INTERNAL, f"the server at {path} answered with a malformed error")
    kind = error.get("kind")
    message = error.get("message")
    # A kind this client does not know yet (a newer server) is passed on as is.
    raise AdminError(
        kind if isinstance(kind, str) and kind else INTERNAL,
        message if isinstance(message, str) else "unknown error",
    )
