"""Drive a real SSSD (NSS + PAM responders) against an LDAP server, by hand.

SSSD is started as ``sssd -i -c FILE --logger=stderr`` (no systemd) with a config owned
by root, mode 0600. Its state under /var/lib/sss (responder sockets, cache databases,
the memory cache) survives a stop, so it is wiped before every start: each test
variant sees only what the directory says now. Clients run with
``SSS_NSS_USE_MEMCACHE=NO`` so glibc asks the responder instead of a stale mmap cache.

The machine's files touched here are restored: ``/etc/nsswitch.conf`` gets ``sss`` on
its passwd/group lines only when missing (and is put back afterwards), and the PAM
service file ``/etc/pam.d/ldapsrv-test`` is removed after use.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from e2e.harness import ToolResult, require_service, run_tool, stop_process, tail

SSS_STATE = Path("/var/lib/sss")
SSSD_PIDFILE = Path("/var/run/sssd.pid")
NSSWITCH = Path("/etc/nsswitch.conf")
PAM_SERVICE = "ldapsrv-test"
PAM_FILE = Path("/etc/pam.d") / PAM_SERVICE
DOMAIN = "ldapsrv"
START_TIMEOUT = 30.0
LOOKUP_TIMEOUT = 30.0

#: Environment for every NSS/PAM client: bypass SSSD's memory-mapped cache.
CLIENT_ENV = {"SSS_NSS_USE_MEMCACHE": "NO", "LC_ALL": "C"}


@dataclass(frozen=True)
class Variant:
    """How SSSD reaches the server and which group schema it assumes."""

    transport: str  # "ldaps" or "starttls"
    schema: str  # "rfc2307" or "rfc2307bis"

    @property
    def id(self) -> str:
        return f"{self.transport}-{self.schema}"


VARIANTS = tuple(
    Variant(transport, schema)
    for transport in ("ldaps", "starttls")
    for schema in ("rfc2307", "rfc2307bis")
)


@dataclass(frozen=True)
class Target:
    """The directory SSSD is pointed at."""

    ldap_url: str
    ldaps_url: str
    base_dn: str
    ca_path: Path
    bind_dn: str
    bind_password: str


def render_sssd_conf(variant: Variant, target: Target) -> str:
    if variant.transport == "ldaps":
        uri, start_tls = target.ldaps_url, "false"
    elif variant.transport == "starttls":
        uri, start_tls = target.ldap_url, "true"
    else:
        raise ValueError(f"unknown transport {variant.transport!r}")
    return f"""\
[sssd]
config_file_version = 2
services = nss, pam
domains = {DOMAIN}

[nss]
memcache_timeout = 0

[pam]

[domain/{DOMAIN}]
id_provider = ldap
auth_provider = ldap
chpass_provider = none
access_provider = permit
ldap_uri = {uri}
ldap_search_base = {target.base_dn}
ldap_schema = {variant.schema}
ldap_default_bind_dn = {target.bind_dn}
ldap_default_authtok_type = password
ldap_default_authtok = {target.bind_password}
ldap_tls_cacert = {target.ca_path}
ldap_tls_reqcert = demand
ldap_id_use_start_tls = {start_tls}
cache_credentials = false
enumerate = false
entry_cache_timeout = 5
ldap_network_timeout = 5
ldap_opt_timeout = 10
ldap_search_timeout = 10
debug_level = 6
"""


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def foreign_sssd_pid() -> int | None:
    """The PID of an SSSD this test did not start, if one runs (we must not disturb it)."""
    try:
        pid = int(SSSD_PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _process_alive(pid) else None


def wipe_sssd_state() -> None:
    """Remove responder sockets, cache databases and the memory cache of a stopped SSSD."""
    for directory in (SSS_STATE / "pipes", SSS_STATE / "pipes" / "private"):
        if directory.is_dir():
            for path in directory.iterdir():
                if not path.is_dir():
                    path.unlink(missing_ok=True)
    for directory in (SSS_STATE / "db", SSS_STATE / "mc"):
        if directory.is_dir():
            for path in directory.iterdir():
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
    if SSSD_PIDFILE.exists() and foreign_sssd_pid() is None:
        SSSD_PIDFILE.unlink(missing_ok=True)


@contextlib.contextmanager
def nsswitch_with_sss() -> Iterator[None]:
    """Make sure passwd and group consult ``sss`` in nsswitch.conf; restore afterwards."""
    original = NSSWITCH.read_text() if NSSWITCH.exists() else None
    lines = (original or "").splitlines()
    changed = False
    for database in ("passwd", "group"):
        pattern = re.compile(rf"^\s*{database}\s*:")
        for index, line in enumerate(lines):
            if pattern.match(line):
                if "sss" not in line.split(":", 1)[1].split():
                    lines[index] = line.rstrip() + " sss"
                    changed = True
                break
        else:
            lines.append(f"{database}: files sss")
            changed = True
    if changed:
        NSSWITCH.write_text("\n".join(lines) + "\n")
    try:
        yield
    finally:
        if changed:
            if original is None:
                NSSWITCH.unlink(missing_ok=True)
            else:
                NSSWITCH.write_text(original)


@contextlib.contextmanager
def pam_service() -> Iterator[str]:
    """A PAM service that authenticates only through pam_sss; removed afterwards."""
    PAM_FILE.write_text(
        "# written by the ldapsrv test suite; removed when the test ends\n"
        "auth     required  pam_sss.so\n"
        "account  required  pam_sss.so\n"
    )
    try:
        yield PAM_SERVICE
    finally:
        PAM_FILE.unlink(missing_ok=True)


@contextlib.contextmanager
def prepared_host() -> Iterator[str]:
    """Root, SSSD and ldap-utils installed, no SSSD of someone else running, nsswitch
    consulting ``sss`` and the test PAM service in place; yields the PAM service name.
    Skips (or fails under LDAPSRV_REQUIRE_ALL) without the prerequisites."""
    require_service("sssd")
    require_service("ldap-utils")
    other = foreign_sssd_pid()
    if other is not None:
        raise RuntimeError(
            f"an SSSD not started by the tests is running (pid {other}); stop it first"
        )
    with nsswitch_with_sss(), pam_service() as service:
        yield service


class Sssd:
    """One SSSD instance that we start and stop (by PID) ourselves."""

    def __init__(self, workdir: Path, config: str) -> None:
        self.workdir = workdir
        self.config_path = workdir / "sssd.conf"
        self.log_path = workdir / "sssd.log"
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(config)
        os.chmod(self.config_path, 0o600)
        os.chown(self.config_path, 0, 0)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        other = foreign_sssd_pid()
        if other is not None:
            raise RuntimeError(f"an SSSD we did not start is running (pid {other})")
        wipe_sssd_state()
        env = {**os.environ, **CLIENT_ENV}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                ["sssd", "-i", "-c", str(self.config_path), "--logger=stderr"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        sockets = [SSS_STATE / "pipes" / "nss", SSS_STATE / "pipes" / "pam"]
        deadline = time.monotonic() + timeout
        while not all(path.exists() for path in sockets):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"sssd exited {self.process.returncode} during start-up:\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"sssd made no responder sockets within {timeout:.0f} s:\n{self.log_text()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM to our sssd (its responders and providers follow), then wipe state."""
        if self.process is None:
            return
        group = self.process.pid  # start_new_session: its process group is its PID
        stop_process(self.process)
        # Responders and providers exit after the monitor; make sure none outlives it.
        deadline = time.monotonic() + 10
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _group_alive(group):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        self.process = None
        wipe_sssd_state()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 120) -> str:
        return tail(self.log_text(), lines)


def nss(*argv: str) -> ToolResult:
    return run_tool(list(argv), env=CLIENT_ENV, timeout=LOOKUP_TIMEOUT)


def wait_for_lookup(*argv: str, timeout: float = LOOKUP_TIMEOUT) -> ToolResult:
    """Repeat an NSS lookup until it succeeds: SSSD answers once its provider is online."""
    deadline = time.monotonic() + timeout
    while True:
        result = nss(*argv)
        if result.returncode == 0 or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def pam_authenticate(service: str, user: str, password: str) -> ToolResult:
    return run_tool(
        ["pamtester", service, user, "authenticate", "acct_mgmt"],
        stdin=password + "\n",
        env=CLIENT_ENV,
        timeout=LOOKUP_TIMEOUT,
    )
