"""Running an operation's coroutine without a Deferred when nothing waits.

Most operations now finish without waiting for anything (answers from the
caches, checks that need no thread): for them ``Deferred.fromCoroutine`` and its
callback chain cost more than the operation itself. ``drive`` runs the
coroutine directly until it either ends or awaits a Deferred that has not
fired; only then does it attach itself to that Deferred and resume the
coroutine when it fires, as Twisted's own driver does: a result is sent in
(``Deferred.__await__`` then reads it from the Deferred), a failure is thrown
in at the ``await`` and thereby handled (the Deferred is left holding None, so
nothing is reported as an unhandled error).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


def drive(
    coro: Coroutine[Any, Any, None],
    failed: Callable[[Failure], None],
    finished: Callable[[], None],
) -> None:
    """Run ``coro`` to its end; ``failed`` gets what it raised, then ``finished``
    is called once, whichever way it ended."""

    def step(thrown: BaseException | None) -> None:
        while True:
            try:
                waiting = coro.send(None) if thrown is None else coro.throw(thrown)
            except StopIteration:
                finished()
                return
            except BaseException:  # what the operation raised: answered by ``failed``
                failed(Failure())  # type: ignore[no-untyped-call]
                finished()
                return
            thrown = None
            if not isinstance(waiting, Deferred):
                coro.close()
                failed(Failure(TypeError(f"an operation awaited {waiting!r}")))  # type: ignore[no-untyped-call]
                finished()
                return
            if waiting.called and not waiting.paused:
                result = waiting.result
                if isinstance(result, Failure):
                    thrown = result.value
                    waiting.addErrback(_handled)  # runs at once: the coroutine handles it
                continue
            waiting.addBoth(_resumed, step)
            return

    step(None)


def _resumed(result: object, step: Callable[[BaseException | None], None]) -> object:
    if isinstance(result, Failure):
        step(result.value)
        return None  # the failure is the coroutine's now
    step(None)  # Deferred.__await__ reads the result from the Deferred
    return result


def _handled(failure: Failure) -> None:
    return None
