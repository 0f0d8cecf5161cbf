"""The blocking client against canned servers on real Unix sockets."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ldapsrv.admin.client import call
from ldapsrv.admin.errors import AdminError

Reply = Callable[[socket.socket, bytes], None]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Reply], Path]]:
    """``serve(reply)``: a one-connection server that hands the request line to ``reply``."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(reply: Reply) -> Path:
        path = tmp_path / f"s{len(listeners)}.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(1)
        listener.settimeout(5)
        listeners.append(listener)

        def run() -> None:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                reply(conn, data)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return path

    yield start
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(timeout=5)


def answer(response: object) -> Reply:
    def reply(conn: socket.socket, request: bytes) -> None:
        conn.sendall(json.dumps(response).encode() + b"\n")

    return reply


def test_the_result_of_a_successful_call_is_returned(serve: Callable[[Reply], Path]) -> None:
    seen: list[dict[str, object]] = []

    def reply(conn: socket.socket, request: bytes) -> None:
        seen.append(json.loads(request))
        answer({"id": 1, "ok": True, "result": {"pong": True}})(conn, request)

    path = serve(reply)
    assert call(path, "server.ping", {"a": 1}) == {"pong": True}
    assert seen == [{"id": 1, "command": "server.ping", "args": {"a": 1}}]


def test_an_error_response_raises_admin_error_with_kind_and_message(
    serve: Callable[[Reply], Path],
) -> None:
    error = {"kind": "not_found", "message": "no user named 'x'"}
    path = serve(answer({"id": 1, "ok": False, "error": error}))
    with pytest.raises(AdminError) as info:
        call(path, "user.show", {"name": "x"})
    assert (info.value.kind, info.value.message) == ("not_found", "no user named 'x'")


def test_a_response_arriving_in_pieces_is_reassembled(serve: Callable[[Reply], Path]) -> None:
    big = {"users": [{"name": f"user{i}"} for i in range(5000)]}

    def reply(conn: socket.socket, request: bytes) -> None:
        data = json.dumps({"id": 1, "ok": True, "result": big}).encode() + b"\n"
        for i in range(0, len(data), 1000):
            conn.sendall(data[i : i + 1000])

    assert call(serve(reply), "user.list") == big


def test_a_missing_socket_says_the_server_may_not_be_running(tmp_path: Path) -> None:
    path = tmp_path / "absent.sock"
    with pytest.raises(AdminError) as info:
        call(path, "server.ping")
    assert info.value.kind == "unavailable"
    assert str(info.value) == (
        f"cannot reach ldapsrv control socket at {path}: is the server running?"
    )


def test_a_stale_socket_file_says_the_server_may_not_be_running(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    with pytest.raises(AdminError, match="is the server running"):
        call(path, "server.ping")


def test_a_silent_server_times_out_instead_of_hanging(serve: Callable[[Reply], Path]) -> None:
    release = threading.Event()
    path = serve(lambda conn, request: release.wait(5) and None)
    started = time.monotonic()
    try:
        with pytest.raises(AdminError, match="no answer") as info:
            call(path, "server.ping", timeout=0.3)
    finally:
        release.set()
    assert info.value.kind == "unavailable"
    assert time.monotonic() - started < 3


def test_a_server_closing_without_an_answer_is_reported(serve: Callable[[Reply], Path]) -> None:
    path = serve(lambda conn, request: None)
    with pytest.raises(AdminError, match="without answering"):
        call(path, "server.ping")


@pytest.mark.parametrize("garbage", [b"not json\n", b"[1]\n", b'{"id": 1, "ok": false}\n'])
def test_a_garbled_response_is_an_internal_error_not_a_crash(
    serve: Callable[[Reply], Path], garbage: bytes
) -> None:
    path = serve(lambda conn, request: conn.sendall(garbage))
    with pytest.raises(AdminError) as info:
        call(path, "server.ping")
    assert info.value.kind == "internal"


def test_a_kind_unknown_to_this_client_is_passed_through(serve: Callable[[Reply], Path]) -> None:
    error = {"kind": "forbidden", "message": "internal accounts cannot be edited"}
    path = serve(answer({"id": 1, "ok": False, "error": error}))
    with pytest.raises(AdminError) as info:
        call(path, "x.y")
    assert info.value.kind == "forbidden"
