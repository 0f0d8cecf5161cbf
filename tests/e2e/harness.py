"""The e2e harness: optional services, throwaway databases, a real server process.

Everything here runs real processes on loopback addresses and bounds every wait, so
a broken server makes a test fail with the server's log instead of hanging the suite.
Only processes this module started are ever stopped, always by their PID.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

BASE_DN = "dc=example,dc=org"
LOOPBACK = "127.0.0.1"
READY_MARKER = "ldapsrv ready"
STDOUT_LOG = "ldapsrv.stdout"
STDERR_LOG = "ldapsrv.stderr"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
COMMAND_TIMEOUT = 60.0
#: The group the README has admins create for directory readers (SSSD, NAS).
READERS_GROUP = "ldap-readers"
#: Keeps bcrypt cheap: the tests bind thousands of times.
TEST_BCRYPT_COST = 4

#: The ``ldapsrv`` command. Started through the interpreter running the tests so the
#: same environment (venv, editable install) serves both sides.
LDAPSRV_COMMAND: tuple[str, ...] = (
    sys.executable,
    "-c",
    "import sys; from ldapsrv.cli import main; sys.exit(main())",
)

REPO_ROOT = Path(__file__).resolve().parents[2]

BACKENDS = ("sqlite", "postgresql", "mariadb")
_DATABASE_ENV = {
    "postgresql": "LDAPSRV_TEST_POSTGRESQL_URL",
    "mariadb": "LDAPSRV_TEST_MARIADB_URL",
}


# --------------------------------------------------------------------- services


def require_all() -> bool:
    """True when CI demands every optional service (LDAPSRV_REQUIRE_ALL=1)."""
    return os.environ.get("LDAPSRV_REQUIRE_ALL", "").strip() not in ("", "0")


def unavailable(name: str, reason: str) -> NoReturn:
    """Skip the test, or fail it when skipping is not allowed."""
    message = f"{name} unavailable: {reason}"
    if require_all():
        pytest.fail(f"{message} (LDAPSRV_REQUIRE_ALL=1 forbids skipping)", pytrace=False)
    pytest.skip(message)


def _which_all(*programs: str) -> tuple[bool, str]:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        return False, f"not installed: {', '.join(missing)}"
    return True, ", ".join(str(shutil.which(p)) for p in programs)


def _check_database(backend: str) -> tuple[bool, str]:
    env_var = _DATABASE_ENV[backend]
    url = os.environ.get(env_var, "").strip()
    if not url:
        return False, f"{env_var} is not set"
    from sqlalchemy import create_engine

    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except Exception as exc:
        return False, f"cannot connect with {env_var}: {type(exc).__name__}: {exc}"
    finally:
        engine.dispose()
    return True, url


def _shared_library(pattern: str) -> str | None:
    for directory in ("/lib", "/usr/lib", "/lib64", "/usr/lib64"):
        for path in Path(directory).glob(pattern):
            return str(path)
    return None


def _check_sssd() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "SSSD tests must run as root (they start sssd and edit /etc/pam.d)"
    ok, detail = _which_all("sssd", "getent", "pamtester", "id")
    if not ok:
        return ok, detail
    for what, pattern in (
        ("pam_sss.so (libpam-sss)", "**/security/pam_sss.so"),
        ("libnss_sss.so.2 (libnss-sss)", "**/libnss_sss.so.2"),
        ("the SSSD LDAP provider (sssd-ldap)", "**/sssd/libsss_ldap.so"),
    ):
        if _shared_library(pattern) is None:
            return False, f"{what} is not installed"
    return True, detail


_CHECKS: dict[str, Callable[[], tuple[bool, str]]] = {
    "postgresql": functools.partial(_check_database, "postgresql"),
    "mariadb": functools.partial(_check_database, "mariadb"),
    "ldap-utils": functools.partial(
        _which_all, "ldapsearch", "ldapwhoami", "ldappasswd", "ldapcompare"
    ),
    "slapd": functools.partial(_which_all, "slapd"),
    "sssd": _check_sssd,
}


@functools.cache
def _service_status(name: str) -> tuple[bool, str]:
    return _CHECKS[name]()


def require_service(name: str) -> str:
    """Make sure an optional service is usable, or skip (fail under LDAPSRV_REQUIRE_ALL).

    Known names: ``postgresql`` and ``mariadb`` (returns the admin URL from the
    environment), ``ldap-utils``, ``slapd`` and ``sssd`` (returns where they are).
    """
    if name not in _CHECKS:
        raise ValueError(f"unknown service {name!r}; known: {', '.join(sorted(_CHECKS))}")
    ok, detail = _service_status(name)
    if not ok:
        unavailable(name, detail)
    return detail


# -------------------------------------------------------------------- databases


def _quote_identifier(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"unsafe database name {name!r}")
    return name


@contextlib.contextmanager
def fresh_database(backend: str, directory: Path) -> Iterator[str]:
    """A URL to an empty database of ``backend``, removed again afterwards.

    SQLite gets a new file in ``directory``. PostgreSQL and MariaDB get a database of
    their own with a random name, created through the URL in the environment, so runs
    never see each other's tables and every run starts from an empty schema.
    """
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'ldapsrv.sqlite3'}"
        return
    if backend not in _DATABASE_ENV:
        raise ValueError(f"unknown backend {backend!r}")
    admin_url = require_service(backend)

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = _quote_identifier(f"ldapsrv_test_{secrets.token_hex(6)}")
    engine = create_engine(
        admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        with engine.connect() as connection:
            if backend == "mariadb":
                connection.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
            else:
                connection.exec_driver_sql(f"CREATE DATABASE {name}")
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with engine.connect() as connection:
                if backend == "postgresql":
                    connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                else:
                    connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    finally:
        engine.dispose()


# ----------------------------------------------------------------------- ports


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct ports that were free a moment ago (bound to port 0)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


# ------------------------------------------------------------------ the server


class ServerStartError(Exception):
    """The server did not become ready; the message carries its log."""


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):  # an inline table: {name = {size_limit = 2}}
        items = ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(f"cannot render {value!r} as TOML")


def render_config(sections: Mapping[str, Mapping[str, object]]) -> str:
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)


def hermetic_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for server and CLI processes.

    Settings a developer exported (``LDAPSRV_*``) must not leak into the server under
    test, so only the test-suite switches survive.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("LDAPSRV_")
        or key.startswith("LDAPSRV_TEST_")
        or key == "LDAPSRV_REQUIRE_ALL"
    }
    # The server under test is this working tree, installed (-e) or not.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("LC_ALL", "C.UTF-8")
    if extra:
        env.update(extra)
    return env


def stop_process(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """Stop one process we started: SIGTERM by PID, SIGKILL if it ignores that."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def tail(text: str, lines: int = 80) -> str:
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class LdapServer:
    """A running ``ldapsrv serve`` process and the ways to reach it."""

    process: subprocess.Popen[bytes]
    workdir: Path
    data_dir: Path
    config_path: Path
    control_socket: Path
    database_url: str
    ldap_port: int
    ldaps_port: int
    base_dn: str = BASE_DN
    host: str = LOOPBACK
    api_port: int = 0  # the management API's port when [api] enabled = true

    @property
    def stdout_path(self) -> Path:
        return self.workdir / STDOUT_LOG

    @property
    def stderr_path(self) -> Path:
        return self.workdir / STDERR_LOG

    # -- addresses
    @property
    def ldap_url(self) -> str:
        return f"ldap://{self.host}:{self.ldap_port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.host}:{self.ldaps_port}"

    @property
    def api_url(self) -> str:
        """``https://127.0.0.1:PORT/api/v1`` (the API must be enabled in the settings)."""
        return f"https://{self.host}:{self.api_port}/api/v1"

    @property
    def ca_path(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"

    def user_dn(self, name: str) -> str:
        return f"cn={name},ou=users,{self.base_dn}"

    def group_dn(self, name: str) -> str:
        return f"cn={name},ou=groups,{self.base_dn}"

    # -- log
    def log_text(self) -> str:
        parts = []
        for path in (self.stderr_path, self.stdout_path):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def log_sections(self) -> list[tuple[str, str]]:
        backend = self.database_url.split(":", 1)[0]
        return [(f"ldapsrv log ({self.ldap_url}, {backend})", tail(self.log_text(), 200))]

    # -- admin CLI
    def ctl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``ldapsrv ARGS --socket <control socket>``; raise on failure if ``check``."""
        argv = [*LDAPSRV_COMMAND, *args, "--socket", str(self.control_socket)]
        result = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            env=hermetic_env(),
            cwd=self.workdir,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"ldapsrv {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def ctl_json(self, *args: str, stdin: str | None = None) -> Any:
        return json.loads(self.ctl(*args, "--json", stdin=stdin).stdout)

    def add_user(
        self,
        name: str,
        password: str | None = None,
        *,
        uid_number: int | None = None,
        gid_number: int | None = None,
        mail: str | None = None,
        display_name: str | None = None,
        given_name: str | None = None,
        surname: str | None = None,
    ) -> None:
        args = ["user", "add", name]
        for flag, value in (
            ("--uid-number", uid_number),
            ("--gid-number", gid_number),
            ("--mail", mail),
            ("--display-name", display_name),
            ("--given-name", given_name),
            ("--surname", surname),
        ):
            if value is not None:
                args += [flag, str(value)]
        if password is not None:
            args.append("--password-stdin")
            self.ctl(*args, stdin=password + "\n")
        else:
            self.ctl(*args)

    def add_group(
        self,
        name: str,
        members: Sequence[str] = (),
        *,
        gid_number: int | None = None,
        description: str | None = None,
    ) -> None:
        args = ["group", "add", name]
        if gid_number is not None:
            args += ["--gid-number", str(gid_number)]
        if description is not None:
            args += ["--description", description]
        self.ctl(*args)
        for member in members:
            self.ctl("group", "add-member", name, member)

    # -- access control
    def grant(
        self,
        permission: str,
        *,
        user: str | None = None,
        group: str | None = None,
        scope: str | None = None,
    ) -> None:
        """``permission grant PERMISSION (--user NAME | --group NAME) [--scope GROUP]``."""
        self.ctl("permission", "grant", permission, *_grant_subject(user, group, scope))

    def revoke(
        self,
        permission: str,
        *,
        user: str | None = None,
        group: str | None = None,
        scope: str | None = None,
    ) -> None:
        """``permission revoke`` with the arguments of ``grant``."""
        self.ctl("permission", "revoke", permission, *_grant_subject(user, group, scope))

    def add_full_directory_reader(self, account: str, group: str = READERS_GROUP) -> None:
        """What the README tells admins to do for SSSD or a NAS: a group holding
        ``search_full_directory`` (created and granted on first use), ``account`` in it."""
        groups = {g["name"] for g in self.ctl_json("group", "list")["groups"]}
        if group not in groups:
            self.add_group(group)
            self.grant("search_full_directory", group=group)
        self.ctl("group", "add-member", group, account)

    # -- service accounts and tokens (the answers of ``--json``)
    def create_service_account(self, name: str, *options: str) -> dict[str, Any]:
        """``service-account create NAME OPTIONS --json``: name, dn, token, token_identifier,
        expires, group, ..."""
        result: dict[str, Any] = self.ctl_json("service-account", "create", name, *options)
        return result

    def create_token(self, identifier: str, user: str, *options: str) -> dict[str, Any]:
        """``token create --identifier ID --user NAME OPTIONS --json``: the token's
        metadata plus ``value``."""
        result: dict[str, Any] = self.ctl_json(
            "token", "create", "--identifier", identifier, "--user", user, *options
        )
        return result

    # -- lifecycle
    def stop(self) -> None:
        """Stop the server (by PID) and remove its private socket directory."""
        stop_process(self.process)
        if self.control_socket.parent.name.startswith("ldapsrv-test-"):
            shutil.rmtree(self.control_socket.parent, ignore_errors=True)


def _grant_subject(user: str | None, group: str | None, scope: str | None) -> list[str]:
    if (user is None) == (group is None):
        raise ValueError("a grant names exactly one of user= or group=")
    args = ["--user", user] if user is not None else ["--group", str(group)]
    if scope is not None:
        args += ["--scope", scope]
    return args


def _run_checked(argv: Sequence[str], what: str, cwd: Path) -> None:
    result = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT * 2,
        env=hermetic_env(),
        cwd=cwd,
    )
    if result.returncode != 0:
        raise ServerStartError(
            f"{what} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )


def _wait_ready(server: LdapServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        log = server.log_text()
        if READY_MARKER in log:
            break
        returncode = server.process.poll()
        if returncode is not None:
            raise ServerStartError(f"ldapsrv serve exited {returncode} before ready:\n{log}")
        if time.monotonic() > deadline:
            stop_process(server.process)
            raise ServerStartError(
                f"ldapsrv serve printed no {READY_MARKER!r} within {timeout:.0f} s:\n"
                f"{server.log_text()}"
            )
        time.sleep(0.05)
    # "ready" promises listening sockets; the control socket may lag by a moment.
    while not server.control_socket.exists():
        if time.monotonic() > deadline:
            stop_process(server.process)
            raise ServerStartError(
                f"control socket {server.control_socket} missing after ready:\n{server.log_text()}"
            )
        time.sleep(0.05)


def start_server(
    workdir: Path,
    database_url: str,
    *,
    base_dn: str = BASE_DN,
    settings: Mapping[str, Mapping[str, object]] | None = None,
    timeout: float = START_TIMEOUT,
    attempts: int = 3,
) -> LdapServer:
    """Migrate ``database_url`` and start ``ldapsrv serve`` on free loopback ports.

    ``settings`` adds config file sections (``{"security": {"anonymous_read": True}}``);
    a cheap bcrypt cost (passwords and tokens) is always set. Ports are picked by
    binding port 0; if another process grabs one before the server binds it, start-up
    is retried on new ports.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    sections: dict[str, dict[str, object]] = {
        "security": {"bcrypt_cost": TEST_BCRYPT_COST},
        "tokens": {"bcrypt_cost": TEST_BCRYPT_COST},
    }
    for section, values in (settings or {}).items():
        sections.setdefault(section, {}).update(values)
    config_path = workdir / "ldapsrv.toml"
    config_path.write_text(render_config(sections))
    # Unix socket paths are limited to ~107 bytes and pytest's tmp paths can be longer:
    # the socket (and its lock file) go to a short private directory, removed at stop.
    socket_dir = Path(tempfile.mkdtemp(prefix="ldapsrv-test-", dir="/tmp"))
    control_socket = socket_dir / "control.sock"

    try:
        return _start(
            workdir, database_url, base_dn, config_path, control_socket, timeout, attempts
        )
    except BaseException:
        shutil.rmtree(socket_dir, ignore_errors=True)
        raise


def _start(
    workdir: Path,
    database_url: str,
    base_dn: str,
    config_path: Path,
    control_socket: Path,
    timeout: float,
    attempts: int,
) -> LdapServer:
    data_dir = workdir / "data"
    _run_checked(
        [*LDAPSRV_COMMAND, "db", "upgrade", "--database", database_url],
        "ldapsrv db upgrade",
        workdir,
    )

    last_error: ServerStartError | None = None
    for _ in range(attempts):
        ldap_port, ldaps_port, api_port = free_ports(3)
        argv = [
            *LDAPSRV_COMMAND,
            "serve",
            "--config", str(config_path),
            "--listen", f"{LOOPBACK}:{ldap_port}",
            "--ldaps-listen", f"{LOOPBACK}:{ldaps_port}",
            "--database", database_url,
            "--base-dn", base_dn,
            "--data-dir", str(data_dir),
            "--control-socket", str(control_socket),
        ]  # fmt: skip
        with (workdir / STDOUT_LOG).open("wb") as out, (workdir / STDERR_LOG).open("wb") as err:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                # Only takes effect where the settings enable [api].
                env=hermetic_env({"LDAPSRV_API_LISTEN": f"{LOOPBACK}:{api_port}"}),
                cwd=workdir,
            )
        server = LdapServer(
            process=process,
            workdir=workdir,
            data_dir=data_dir,
            config_path=config_path,
            control_socket=control_socket,
            database_url=database_url,
            ldap_port=ldap_port,
            ldaps_port=ldaps_port,
            base_dn=base_dn,
            api_port=api_port,
        )
        try:
            _wait_ready(server, timeout)
        except ServerStartError as exc:
            stop_process(server.process)
            last_error = exc
            if "in use" in str(exc).lower():
                continue  # lost a port race: try other ports
            raise
        return server
    assert last_error is not None
    raise last_error


@contextlib.contextmanager
def serving(backend: str, workdir: Path, **kwargs: Any) -> Iterator[LdapServer]:
    """A server on a fresh database of ``backend`` (``start_server`` keywords), stopped
    and its database dropped afterwards: for modules that need their own settings."""
    with fresh_database(backend, workdir) as url:
        server = start_server(workdir, url, **kwargs)
        try:
            yield server
        finally:
            server.stop()


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
) -> Any:
    """Poll ``condition`` until it returns something truthy; AssertionError naming
    ``what`` after ``timeout`` seconds. Returns the truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)


_HOOK_SCRIPT = """\
import json, os, sys
identifier = sys.stdin.readline().rstrip("\\n")
value = sys.stdin.readline().rstrip("\\n")
record = {
    "identifier": identifier,
    "value": value,
    "env_identifier": os.environ.get("LDAPSRV_TOKEN_IDENTIFIER"),
    "env_account": os.environ.get("LDAPSRV_TOKEN_ACCOUNT"),
    "argv": sys.argv[2:],
    "parent": os.getppid(),
}
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
os.write(fd, (json.dumps(record) + "\\n").encode())
os.close(fd)
"""


@dataclass(frozen=True)
class HookDelivery:
    """One run of the rotation hook, as the hook itself saw it."""

    identifier: str
    value: str
    env_identifier: str | None
    env_account: str | None
    argv: list[str]
    parent: int  # the PID of the server that ran it


class RotationHookRecorder:
    """A rotation hook script that appends every delivery (stdin and environment) to a
    file, one JSON line per run; several servers may share one recorder."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.script = directory / "rotation_hook.py"
        self.script.write_text(_HOOK_SCRIPT)
        self.output = directory / "deliveries.jsonl"

    @property
    def command(self) -> list[str]:
        return [sys.executable, str(self.script), str(self.output)]

    def deliveries(self, identifier: str | None = None) -> list[HookDelivery]:
        try:
            lines = self.output.read_text().splitlines()
        except FileNotFoundError:
            return []
        found = [HookDelivery(**json.loads(line)) for line in lines if line.strip()]
        return [d for d in found if identifier is None or d.identifier == identifier]

    def wait_for(self, identifier: str, count: int, timeout: float) -> list[HookDelivery]:
        """The first ``count`` deliveries for ``identifier``, waiting up to ``timeout``."""
        deliveries: list[HookDelivery] = wait_until(
            lambda: (found := self.deliveries(identifier)) and len(found) >= count and found,
            timeout,
            f"{count} rotation hook deliveries for token {identifier!r}",
        )
        return deliveries


# ------------------------------------------------------------ client-side tools


@dataclass(frozen=True)
class ToolResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\nexit {self.returncode}\n"
            f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}"
        )


def run_tool(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> ToolResult:
    """Run a command-line client with a bounded wait and capture its output."""
    completed = subprocess.run(
        list(argv),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return ToolResult(tuple(argv), completed.returncode, completed.stdout, completed.stderr)


def ldap_client_env(ca_path: Path | None) -> dict[str, str]:
    """Environment for libldap clients: ignore local ldap.conf/ldaprc, trust our CA."""
    env = {
        "LDAPCONF": "/dev/null",
        "LDAPRC": "ldapsrv-test-no-such-ldaprc",
        "LDAPTLS_REQCERT": "demand",
    }
    if ca_path is not None:
        env["LDAPTLS_CACERT"] = str(ca_path)
    return env


# ------------------------------------------------------------------------ LDIF


@dataclass
class LdifEntry:
    dn: str
    attributes: dict[str, list[str]]  # attribute names lower-cased

    def get(self, name: str) -> list[str]:
        return self.attributes.get(name.lower(), [])

    def has(self, name: str) -> bool:
        return name.lower() in self.attributes


@dataclass
class LdifResult:
    """The ``search:``/``result:`` record ldapsearch prints after each response."""

    code: int
    text: str
    controls: list[str]
    #: ``pagedresults: cookie=...`` as printed by ``ldapsearch -E pr=``; None if absent.
    paged_cookie: str | None = None


@dataclass
class LdapsearchOutput:
    entries: list[LdifEntry]
    #: Entries grouped by the search result that ended them: one group per page.
    pages: list[list[LdifEntry]]
    results: list[LdifResult]
    comments: list[str]


def _unfold(text: str) -> list[str]:
    lines: list[str] = []
    for raw in text.splitlines():
        if raw.startswith(" ") and lines and lines[-1] and not lines[-1].startswith("#"):
            lines[-1] += raw[1:]
        else:
            lines.append(raw)
    return lines


def _decode_value(line: str) -> tuple[str, str]:
    import base64

    name, sep, rest = line.partition(":")
    if not sep:
        raise ValueError(f"not an LDIF line: {line!r}")
    if rest.startswith(":"):
        value = base64.b64decode(rest[1:].strip()).decode("utf-8", errors="replace")
    else:
        value = rest[1:] if rest.startswith(" ") else rest
    return name, value


def parse_ldapsearch(text: str) -> LdapsearchOutput:
    """Parse ldapsearch's (extended) LDIF output, including paged result records."""
    output = LdapsearchOutput(entries=[], pages=[], results=[], comments=[])
    current_page: list[LdifEntry] = []
    record: list[str] = []

    def flush() -> None:
        nonlocal current_page
        if not record:
            return
        first_name, first_value = _decode_value(record[0])
        if first_name.lower() == "dn":
            entry = LdifEntry(dn=first_value, attributes={})
            for line in record[1:]:
                name, value = _decode_value(line)
                entry.attributes.setdefault(name.lower(), []).append(value)
            output.entries.append(entry)
            current_page.append(entry)
        elif first_name.lower() in ("search", "result"):
            result = LdifResult(code=-1, text="", controls=[])
            for line in record:
                name, value = _decode_value(line)
                if name == "result":
                    number, _, result.text = value.strip().partition(" ")
                    result.code = int(number)
                elif name == "control":
                    result.controls.append(value.strip())
                elif name == "pagedresults":
                    result.paged_cookie = value.strip().removeprefix("cookie=")
            output.results.append(result)
            output.pages.append(current_page)
            current_page = []
        record.clear()

    for line in _unfold(text):
        if line.startswith("#"):
            output.comments.append(line[1:].strip())
            continue
        if not line.strip():
            flush()
            continue
        if line.startswith("version:") and not record:
            continue
        record.append(line)
    flush()
    if current_page:
        output.pages.append(current_page)
    return output
