"""Rotation: manual and at expiry, exactly once across servers, hooks that survive a crash."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from token_fakes import T0, FakeClock, FakeTokenStore, new_token

from ldapsrv.auth.ports import NewSecret
from ldapsrv.auth.rotation import (
    ENV_ACCOUNT,
    ENV_IDENTIFIER,
    HookFailed,
    HookStatus,
    RotationHook,
    Rotator,
)
from ldapsrv.auth.tokens import DEFAULT_LIFETIME, TokenVerifier, issue_token
from ldapsrv.auth.vault import TokenVault
from ldapsrv.directory.records import AuditEvent, TokenIntent, TokenRecord
from ldapsrv.errors import NotFound

COST = 4
DAY = timedelta(days=1)

RECORDING_HOOK = """
import json, os, sys
out = sys.argv[1]
stdin = sys.stdin.read()
with open(out, "a") as handle:
    handle.write(json.dumps({"stdin": stdin, "argv": sys.argv, "env": dict(os.environ)}) + "\\n")
"""

FAILING_HOOK = """
import sys
identifier = sys.stdin.readline().strip()
value = sys.stdin.readline().strip()
sys.stderr.write("cannot reach the NAS\\n")
sys.stderr.write("got " + value + "\\n")
for n in range(20):
    sys.stderr.write(f"detail line {n}\\n")
sys.exit(3)
"""

HANGING_HOOK = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
sys.stderr.write("waiting forever\\n")
sys.stderr.flush()
time.sleep(60)
"""


class Deliveries:
    def __init__(self, path: Path) -> None:
        self.path = path

    def all(self) -> list[dict[str, object]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines()]


def script_hook(tmp_path: Path, body: str, *args: str, timeout: float = 10) -> RotationHook:
    script = tmp_path / "hook.py"
    script.write_text(body)
    return RotationHook([sys.executable, str(script), *args], timeout)


@pytest.fixture
def recording(tmp_path: Path) -> tuple[RotationHook, Deliveries]:
    out = tmp_path / "deliveries.jsonl"
    return script_hook(tmp_path, RECORDING_HOOK, str(out)), Deliveries(out)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def store(clock: FakeClock) -> FakeTokenStore:
    return FakeTokenStore(clock=clock)


def add_token(
    store: FakeTokenStore,
    identifier: str = "nas-backup",
    *,
    vault: TokenVault | None = None,
    lifetime: timedelta | None = DAY,
    expiring: bool = True,
    intent: TokenIntent = TokenIntent.APP_PASSWORD,
    description: str | None = "backup job",
) -> tuple[TokenRecord, str]:
    issued = issue_token(COST, vault)
    expires_at = T0 + lifetime if (expiring and lifetime is not None) else None
    record = store.create_token(
        new_token(
            identifier,
            lookup_id=issued.lookup_id,
            secret_hash=issued.secret_hash,
            encrypted_value=issued.encrypted_value,
            expiring=expiring,
            expires_at=expires_at,
            lifetime=lifetime,
            intent=intent,
            description=description,
        )
    )
    return record, issued.value


def verifies(value: str, record: TokenRecord) -> bool:
    return TokenVerifier(COST).verify(value.encode(), record)


def events(store: FakeTokenStore, action: str) -> list[AuditEvent]:
    return [e for e in store.audit if e.action == action]


# --- manual rotation ------------------------------------------------------------------


def test_manual_rotation_gives_a_new_value_and_keeps_the_settings(
    store: FakeTokenStore, clock: FakeClock
) -> None:
    before, old_value = add_token(store)
    clock.advance(timedelta(hours=3))
    rotator = Rotator(store, COST, None, clock)
    after, issued = rotator.rotate("nas-backup", actor="control-socket uid=0", channel="cs")
    assert issued.value != old_value
    assert verifies(issued.value, after)
    assert not verifies(old_value, after)
    assert after.lookup_id == issued.lookup_id != before.lookup_id
    assert (after.intent, after.description, after.expiring) == (
        before.intent,
        before.description,
        before.expiring,
    )
    assert after.expires_at == clock.now + DAY
    assert after.rotated_at == clock.now
    assert after.generation == before.generation + 1
    assert not after.hook_pending


def test_manual_rotation_is_audited_with_who_and_where(store: FakeTokenStore) -> None:
    add_token(store)
    _, issued = Rotator(store, COST, None, FakeClock()).rotate(
        "nas-backup", actor="control-socket uid=0", channel="control-socket"
    )
    [event] = events(store, "token.rotate")
    assert (event.actor, event.channel, event.target) == (
        "control-socket uid=0",
        "control-socket",
        "token nas-backup",
    )
    assert ("account", "nas") in event.details
    assert issued.value not in repr(event)


def test_a_non_expiring_token_stays_non_expiring_after_rotation(store: FakeTokenStore) -> None:
    add_token(store, expiring=False, lifetime=None)
    after, _ = Rotator(store, COST, None, FakeClock()).rotate("nas-backup", actor="a", channel="c")
    assert not after.expiring
    assert after.expires_at is None


def test_a_token_without_a_recorded_lifetime_gets_its_intents_default(
    store: FakeTokenStore, clock: FakeClock
) -> None:
    record, _ = add_token(store, intent=TokenIntent.API)
    store.rows["nas-backup"] = replace(record, lifetime_seconds=None)
    after, _ = Rotator(store, COST, None, clock).rotate("nas-backup", actor="a", channel="c")
    assert after.expires_at == clock.now + DEFAULT_LIFETIME[TokenIntent.API]


def test_manual_rotation_of_an_unknown_token_is_not_found(store: FakeTokenStore) -> None:
    with pytest.raises(NotFound):
        Rotator(store, COST, None, FakeClock()).rotate("nope", actor="a", channel="c")


def test_manual_rotation_keeps_an_encrypted_copy_when_a_vault_is_given(
    store: FakeTokenStore,
) -> None:
    vault = TokenVault.generate()
    add_token(store, vault=vault)
    after, issued = Rotator(store, COST, vault, FakeClock()).rotate(
        "nas-backup", actor="a", channel="c"
    )
    assert after.encrypted_value is not None
    assert vault.decrypt(after.encrypted_value, after.lookup_id) == issued.value


def test_manual_rotation_delivers_the_new_value_to_the_hook(
    store: FakeTokenStore, recording: tuple[RotationHook, Deliveries]
) -> None:
    hook, deliveries = recording
    add_token(store)
    after, issued = Rotator(store, COST, None, FakeClock(), hook).rotate(
        "nas-backup", actor="a", channel="c"
    )
    [delivery] = deliveries.all()
    assert delivery["stdin"] == f"nas-backup\n{issued.value}\n"
    assert not after.hook_pending
    assert not store.get_token("nas-backup").hook_pending


def test_a_failing_hook_does_not_fail_a_manual_rotation_and_stays_pending(
    store: FakeTokenStore, tmp_path: Path
) -> None:
    add_token(store)
    hook = script_hook(tmp_path, FAILING_HOOK)
    after, issued = Rotator(store, COST, None, FakeClock(), hook).rotate(
        "nas-backup", actor="a", channel="c"
    )
    assert verifies(issued.value, after)
    assert after.hook_pending
    assert store.get_token("nas-backup").hook_pending


def test_manual_rotation_racing_another_rotation_retries_on_the_fresh_row(
    store: FakeTokenStore,
) -> None:
    add_token(store)
    real_replace = store.replace_secret
    raced = False

    def replace_after_a_rival(
        identifier: str,
        expected_generation: int,
        secret: NewSecret,
        audit: AuditEvent | None = None,
    ) -> TokenRecord | None:
        nonlocal raced
        if not raced:
            raced = True
            rival = issue_token(COST, None)
            real_replace(
                identifier,
                expected_generation,
                replace(secret, lookup_id=rival.lookup_id, secret_hash=rival.secret_hash),
            )
        return real_replace(identifier, expected_generation, secret, audit)

    store.replace_secret = replace_after_a_rival  # type: ignore[method-assign]
    after, issued = Rotator(store, COST, None, FakeClock()).rotate(
        "nas-backup", actor="a", channel="c"
    )
    assert after.generation == 3
    assert verifies(issued.value, store.get_token("nas-backup"))


# --- rotation at expiry ---------------------------------------------------------------


def test_nothing_is_rotated_before_the_expiry_instant(
    store: FakeTokenStore, clock: FakeClock
) -> None:
    add_token(store)
    clock.now = T0 + DAY - timedelta(seconds=1)
    assert Rotator(store, COST, None, clock).rotate_due() == []
    assert store.get_token("nas-backup").generation == 1


def test_an_expired_token_is_rotated_with_a_new_expiry_of_the_same_lifetime(
    store: FakeTokenStore, clock: FakeClock
) -> None:
    _, old_value = add_token(store)
    add_token(store, "forever", expiring=False, lifetime=None)
    clock.now = T0 + DAY  # the exact instant
    [outcome] = Rotator(store, COST, None, clock).rotate_due()
    after = store.get_token("nas-backup")
    assert outcome.identifier == "nas-backup"
    assert outcome.hook is HookStatus.NOT_CONFIGURED
    assert after.generation == outcome.generation == 2
    assert after.expires_at == clock.now + DAY
    assert not verifies(old_value, after)
    assert not after.hook_pending
    assert store.get_token("forever").generation == 1


def test_a_rotation_at_expiry_is_audited_as_the_server(
    store: FakeTokenStore, clock: FakeClock
) -> None:
    add_token(store)
    clock.now = T0 + 2 * DAY
    Rotator(store, COST, None, clock).rotate_due()
    [event] = events(store, "token.rotate.expired")
    assert (event.actor, event.channel, event.target) == ("ldapsrv", "server", "token nas-backup")
    assert ("expires_at", (clock.now + DAY).isoformat()) in event.details


def test_the_hook_receives_identifier_and_new_value_on_stdin_and_the_value_nowhere_else(
    store: FakeTokenStore, clock: FakeClock, recording: tuple[RotationHook, Deliveries]
) -> None:
    hook, deliveries = recording
    add_token(store)
    clock.now = T0 + DAY
    [outcome] = Rotator(store, COST, None, clock, hook).rotate_due()
    assert outcome.hook is HookStatus.DELIVERED
    [delivery] = deliveries.all()
    stdin = str(delivery["stdin"])
    assert stdin.endswith("\n") and stdin.count("\n") == 2
    identifier, value = stdin.split("\n")[:2]
    assert identifier == "nas-backup"
    assert verifies(value, store.get_token("nas-backup"))
    env = delivery["env"]
    assert isinstance(env, dict)
    assert env[ENV_IDENTIFIER] == "nas-backup"
    assert env[ENV_ACCOUNT] == "nas"
    assert all(value not in str(v) for v in env.values())
    assert all(value not in str(arg) for arg in delivery["argv"])  # type: ignore[attr-defined]
    assert not store.get_token("nas-backup").hook_pending


def test_a_failing_hook_leaves_the_flag_set_and_reports_status_and_stderr(
    store: FakeTokenStore, clock: FakeClock, tmp_path: Path
) -> None:
    add_token(store)
    clock.now = T0 + DAY
    hook = script_hook(tmp_path, FAILING_HOOK)
    [outcome] = Rotator(store, COST, None, clock, hook).rotate_due()
    record = store.get_token("nas-backup")
    assert record.hook_pending
    assert outcome.hook is HookStatus.FAILED
    assert outcome.error is not None
    assert "status 3" in outcome.error
    assert "cannot reach the NAS" in outcome.error
    assert "detail line 10" not in outcome.error  # only the first lines
    assert "[token value]" in outcome.error  # the echoed value is blanked out
    assert "ldsrv_" not in outcome.error


def test_hook_failed_carries_the_status_and_the_head_of_stderr(tmp_path: Path) -> None:
    hook = script_hook(tmp_path, FAILING_HOOK)
    value = issue_token(COST, None).value
    with pytest.raises(HookFailed) as caught:
        hook.deliver("nas-backup", "nas", value)
    assert caught.value.returncode == 3
    assert caught.value.stderr_head.startswith("cannot reach the NAS")
    assert value not in str(caught.value)


def test_a_hanging_hook_and_its_children_are_killed_at_the_timeout(tmp_path: Path) -> None:
    hook = script_hook(tmp_path, HANGING_HOOK, timeout=1)
    started = time.monotonic()
    with pytest.raises(HookFailed, match="timed out after 1s") as caught:
        hook.deliver("nas-backup", "nas", "value")
    assert time.monotonic() - started < 15
    assert caught.value.returncode is None


def test_a_hook_that_cannot_start_is_a_hook_failure(tmp_path: Path) -> None:
    hook = RotationHook([str(tmp_path / "missing-hook")], 5)
    with pytest.raises(HookFailed, match="could not start"):
        hook.deliver("nas-backup", "nas", "value")


def test_a_hook_that_ignores_stdin_still_succeeds(tmp_path: Path) -> None:
    script_hook(tmp_path, "import sys; sys.exit(0)").deliver("t", "a", "v" * 62)


def test_a_hook_needs_a_command_and_a_positive_timeout() -> None:
    with pytest.raises(ValueError):
        RotationHook([], 5)
    with pytest.raises(ValueError):
        RotationHook(["true"], 0)


def test_more_due_tokens_than_one_batch_are_all_rotated(
    store: FakeTokenStore, clock: FakeClock
) -> None:
    for n in range(105):
        add_token(store, f"t{n:03d}")
    clock.now = T0 + DAY
    outcomes = Rotator(store, COST, None, clock).rotate_due()
    assert len(outcomes) == 105
    assert all(r.generation == 2 for r in store.list_tokens())


def test_rotation_never_logs_a_token_value(
    store: FakeTokenStore,
    clock: FakeClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    vault = TokenVault.generate()
    add_token(store, vault=vault)
    clock.now = T0 + DAY
    caplog.set_level(logging.DEBUG, logger="ldapsrv.tokens")
    rotator = Rotator(store, COST, vault, clock, script_hook(tmp_path, FAILING_HOOK))
    rotator.rotate_due()
    clock.advance(timedelta(hours=1))
    rotator.deliver_pending_hooks()
    _, manual = rotator.rotate("nas-backup", actor="a", channel="c")
    record = store.get_token("nas-backup")
    assert caplog.records
    assert "ldsrv_" not in caplog.text
    assert manual.value not in caplog.text
    assert record.secret_hash not in caplog.text


# --- several servers ------------------------------------------------------------------


def test_two_servers_one_after_the_other_rotate_exactly_once(
    store: FakeTokenStore, clock: FakeClock, recording: tuple[RotationHook, Deliveries]
) -> None:
    hook, deliveries = recording
    add_token(store)
    clock.now = T0 + DAY
    first = Rotator(store, COST, None, clock, hook)
    second = Rotator(store, COST, None, clock, hook)
    assert len(first.rotate_due()) == 1
    assert second.rotate_due() == []
    assert len(events(store, "token.rotate.expired")) == 1
    assert len(deliveries.all()) == 1


class SameSnapshotStore(FakeTokenStore):
    """Both servers read the due list before either writes: the race CAS settles."""

    def __init__(self, clock: FakeClock, servers: int) -> None:
        super().__init__(clock=clock)
        self.barrier = threading.Barrier(servers)
        self.reads = 0

    def tokens_due(self, now: datetime, limit: int = 100) -> list[TokenRecord]:
        due = super().tokens_due(now, limit)
        self.reads += 1
        if self.reads <= self.barrier.parties:
            self.barrier.wait(timeout=10)
        return due


def test_two_servers_racing_on_one_database_rotate_exactly_once(
    clock: FakeClock, recording: tuple[RotationHook, Deliveries]
) -> None:
    hook, deliveries = recording
    store = SameSnapshotStore(clock, servers=2)
    add_token(store)
    add_token(store, "sssd-host")
    clock.now = T0 + DAY
    results: list[int] = []

    def server() -> None:
        results.append(len(Rotator(store, COST, None, clock, hook).rotate_due()))

    threads = [threading.Thread(target=server) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results) == 2  # two tokens, each rotated by exactly one server
    assert store.replace_calls == 4  # both servers tried both tokens
    assert all(r.generation == 2 for r in store.list_tokens())
    assert len(events(store, "token.rotate.expired")) == 2
    assert sorted(d["env"][ENV_IDENTIFIER] for d in deliveries.all()) == [  # type: ignore[index]
        "nas-backup",
        "sssd-host",
    ]


# --- crashes and pending hooks --------------------------------------------------------


class Crash(BaseException):
    """The process dies: nothing after this point runs."""


class CrashingHook(RotationHook):
    def deliver(self, identifier: str, account_name: str, value: str) -> None:
        raise Crash


def test_after_a_crash_before_the_hook_the_next_start_delivers_the_value(
    store: FakeTokenStore, clock: FakeClock, recording: tuple[RotationHook, Deliveries]
) -> None:
    hook, deliveries = recording
    vault = TokenVault.generate()
    add_token(store, vault=vault)
    clock.now = T0 + DAY
    with pytest.raises(Crash):
        Rotator(store, COST, vault, clock, CrashingHook(["unused"], 5)).rotate_due()
    crashed = store.get_token("nas-backup")
    assert crashed.generation == 2 and crashed.hook_pending

    clock.advance(timedelta(minutes=5))
    restarted = Rotator(store, COST, vault, clock, hook)
    assert restarted.rotate_due() == []  # already rotated: not rotated again
    [outcome] = restarted.deliver_pending_hooks()
    assert outcome.hook is HookStatus.DELIVERED
    [delivery] = deliveries.all()
    assert verifies(str(delivery["stdin"]).split("\n")[1], store.get_token("nas-backup"))
    assert not store.get_token("nas-backup").hook_pending
    assert restarted.deliver_pending_hooks() == []


def test_a_failed_hook_is_delivered_again_later(
    store: FakeTokenStore, clock: FakeClock, tmp_path: Path
) -> None:
    vault = TokenVault.generate()
    add_token(store, vault=vault)
    clock.now = T0 + DAY
    Rotator(store, COST, vault, clock, script_hook(tmp_path, FAILING_HOOK)).rotate_due()
    assert store.get_token("nas-backup").hook_pending
    out = tmp_path / "later.jsonl"
    fixed = RotationHook([sys.executable, str(tmp_path / "fixed.py"), str(out)], 10)
    (tmp_path / "fixed.py").write_text(RECORDING_HOOK)
    clock.advance(timedelta(minutes=5))
    [outcome] = Rotator(store, COST, vault, clock, fixed).deliver_pending_hooks()
    assert outcome.hook is HookStatus.DELIVERED
    assert len(Deliveries(out).all()) == 1


def test_a_rotation_younger_than_the_hook_timeout_is_left_to_its_own_server(
    store: FakeTokenStore, clock: FakeClock, recording: tuple[RotationHook, Deliveries]
) -> None:
    hook, deliveries = recording
    vault = TokenVault.generate()
    add_token(store, vault=vault)
    clock.now = T0 + DAY
    with pytest.raises(Crash):
        Rotator(store, COST, vault, clock, CrashingHook(["unused"], 5)).rotate_due()
    clock.advance(timedelta(seconds=30))
    assert Rotator(store, COST, vault, clock, hook).deliver_pending_hooks() == []
    assert deliveries.all() == []
    assert store.get_token("nas-backup").hook_pending


def test_without_an_encrypted_copy_a_pending_value_is_reported_lost_and_cleared(
    store: FakeTokenStore,
    clock: FakeClock,
    recording: tuple[RotationHook, Deliveries],
    caplog: pytest.LogCaptureFixture,
) -> None:
    hook, deliveries = recording
    add_token(store)
    clock.now = T0 + DAY
    with pytest.raises(Crash):
        Rotator(store, COST, None, clock, CrashingHook(["unused"], 5)).rotate_due()
    clock.advance(timedelta(hours=1))
    [outcome] = Rotator(store, COST, None, clock, hook).deliver_pending_hooks()
    assert outcome.hook is HookStatus.UNDELIVERABLE
    assert "can no longer be delivered" in caplog.text
    assert "token rotate nas-backup" in caplog.text
    assert not store.get_token("nas-backup").hook_pending
    assert deliveries.all() == []


def test_a_copy_this_servers_key_cannot_open_stays_pending(
    store: FakeTokenStore, clock: FakeClock, recording: tuple[RotationHook, Deliveries]
) -> None:
    hook, deliveries = recording
    add_token(store, vault=TokenVault.generate())
    clock.now = T0 + DAY
    with pytest.raises(Crash):
        Rotator(store, COST, TokenVault.generate(), clock, CrashingHook(["unused"], 5)).rotate_due()
    clock.advance(timedelta(hours=1))
    other_key = TokenVault.generate()
    [outcome] = Rotator(store, COST, other_key, clock, hook).deliver_pending_hooks()
    assert outcome.hook is HookStatus.FAILED
    assert outcome.error is not None and "different key" in outcome.error
    assert store.get_token("nas-backup").hook_pending
    assert deliveries.all() == []


def test_a_pending_flag_without_a_configured_hook_is_cleared(
    store: FakeTokenStore, clock: FakeClock
) -> None:
    vault = TokenVault.generate()
    add_token(store, vault=vault)
    clock.now = T0 + DAY
    with pytest.raises(Crash):
        Rotator(store, COST, vault, clock, CrashingHook(["unused"], 5)).rotate_due()
    [outcome] = Rotator(store, COST, vault, clock, None).deliver_pending_hooks()
    assert outcome.hook is HookStatus.NOT_CONFIGURED
    assert not store.get_token("nas-backup").hook_pending


def test_clearing_a_pending_flag_never_clears_a_later_rotations_flag(
    store: FakeTokenStore, clock: FakeClock
) -> None:
    vault = TokenVault.generate()
    add_token(store, vault=vault)
    clock.now = T0 + DAY
    with pytest.raises(Crash):
        Rotator(store, COST, vault, clock, CrashingHook(["unused"], 5)).rotate_due()
    stale = store.get_token("nas-backup")
    clock.now = T0 + 3 * DAY
    with pytest.raises(Crash):
        Rotator(store, COST, vault, clock, CrashingHook(["unused"], 5)).rotate_due()
    store.clear_hook_pending(stale.identifier, stale.generation)
    assert store.get_token("nas-backup").hook_pending


def test_each_rotation_is_reported_with_its_trigger(
    store: FakeTokenStore, clock: FakeClock
) -> None:
    add_token(store)
    add_token(store, "later", lifetime=10 * DAY)
    triggers: list[str] = []
    rotator = Rotator(store, COST, None, clock, on_rotated=triggers.append)
    rotator.rotate("later", actor="a", channel="c")
    clock.now = T0 + DAY
    rotator.rotate_due()
    rotator.rotate_due()  # nothing due any more: nothing reported
    assert triggers == ["admin", "expired"]
