"""drive(): an operation's coroutine run without Deferred.fromCoroutine."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from ldapsrv.ldap.driving import drive


class Outcome:
    def __init__(self) -> None:
        self.failures: list[Failure] = []
        self.finished = 0

    def failed(self, failure: Failure) -> None:
        self.failures.append(failure)

    def done(self) -> None:
        self.finished += 1


def test_a_coroutine_that_waits_for_nothing_finishes_at_once():
    seen: list[int] = []

    async def op() -> None:
        seen.append(await succeed(1))
        seen.append(2)

    out = Outcome()
    drive(op(), out.failed, out.done)
    assert seen == [1, 2]
    assert (out.finished, out.failures) == (1, [])


def test_it_resumes_when_an_awaited_deferred_fires_later():
    waiting: Deferred[str] = Deferred()
    seen: list[str] = []

    async def op() -> None:
        seen.append(await waiting)

    out = Outcome()
    drive(op(), out.failed, out.done)
    assert (seen, out.finished) == ([], 0)
    waiting.callback("answer")
    assert seen == ["answer"]
    assert out.finished == 1
    assert waiting.result == "answer"  # the result stays for any later reader


@pytest.mark.parametrize("fired_before", [True, False])
def test_a_failure_is_thrown_in_where_it_is_awaited_and_can_be_caught(fired_before):
    waiting: Deferred[str] = fail(KeyError("gone")) if fired_before else Deferred()
    seen: list[str] = []

    async def op() -> None:
        try:
            await waiting
        except KeyError as exc:
            seen.append(f"caught {exc.args[0]}")

    out = Outcome()
    drive(op(), out.failed, out.done)
    if not fired_before:
        waiting.errback(KeyError("gone"))
    assert seen == ["caught gone"]
    assert (out.finished, out.failures) == (1, [])


def test_what_the_coroutine_raises_goes_to_failed_then_finished():
    waiting: Deferred[None] = Deferred()

    async def op() -> None:
        await waiting
        raise ValueError("broken")

    out = Outcome()
    drive(op(), out.failed, out.done)
    waiting.callback(None)
    assert out.finished == 1
    assert [f.type for f in out.failures] == [ValueError]


@pytest.mark.parametrize("fired_before", [True, False])
def test_a_handled_failure_is_consumed_not_left_unhandled(fired_before):
    waiting: Deferred[None] = fail(RuntimeError("handled")) if fired_before else Deferred()

    async def op() -> None:
        try:
            await waiting
        except RuntimeError:
            pass

    out = Outcome()
    drive(op(), out.failed, out.done)
    if not fired_before:
        waiting.errback(RuntimeError("handled"))
    # A Deferred whose failure nobody took would log "Unhandled error" when collected:
    # Twisted decides that from _debugInfo.failResult.
    debug = waiting._debugInfo
    assert debug is None or debug.failResult is None
    assert (out.finished, out.failures) == (1, [])


def test_awaiting_something_else_than_a_deferred_is_a_failure():
    class Odd:
        def __await__(self):  # type: ignore[no-untyped-def]
            yield "not a deferred"

    async def op() -> None:
        await Odd()

    out = Outcome()
    drive(op(), out.failed, out.done)
    assert out.finished == 1
    assert [f.type for f in out.failures] == [TypeError]
