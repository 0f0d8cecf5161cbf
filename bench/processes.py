"""Server processes the benchmark starts: ports, readiness, memory, stopping (by PID only)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago (bound to port 0 and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(argv: Sequence[str], cpus: Sequence[int]) -> list[str]:
    """``argv`` under ``taskset`` when cores are given (and taskset exists)."""
    if not cpus or shutil.which("taskset") is None:
        return list(argv)
    return ["taskset", "-c", ",".join(str(c) for c in cpus), *argv]


def run_checked(argv: Sequence[str], what: str, *, cwd: Path, timeout: float = 600) -> str:
    result = subprocess.run(
        list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{what} exited {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result.stdout


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (worker processes share a server's load)."""
    found = [pid]
    index = 0
    while index < len(found):
        current = found[index]
        index += 1
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                found.extend(int(child) for child in task.read_text().split())
    return found


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (VmRSS), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass
class ServerProcess:
    """A server the benchmark started: where it listens and how to stop it."""

    name: str
    process: subprocess.Popen[bytes]
    host: str
    port: int
    workdir: Path
    log_path: Path
    details: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def memory(self) -> dict[str, int]:
        """RSS per process of the server (the first is the main process)."""
        pids = process_tree(self.pid)
        return {str(p): rss_bytes(p) for p in pids}

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in process_tree(self.pid))

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_listening(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log_tail()
                self.stop()
                raise RuntimeError(f"{self.name} exited {self.process.returncode}:\n{log}")
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(1)
                if sock.connect_ex((self.host, self.port)) == 0:
                    return
            time.sleep(0.1)
        log = self.log_tail()
        self.stop()
        raise RuntimeError(f"{self.name} not listening after {timeout:.0f} s:\n{log}")

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL if it does not go; then the work directory."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_process(
    name: str, argv: Sequence[str], *, workdir: Path, host: str, port: int, env: dict[str, str]
) -> ServerProcess:
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv), cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    server = ServerProcess(name, process, host, port, workdir, log_path)
    server.wait_listening()
    return server
