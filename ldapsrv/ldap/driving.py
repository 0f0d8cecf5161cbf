"""Running an operation's coroutine without a Deferred when nothing waits.

Most operations now finish without waiting for anything (answers from the
caches, checks that need no thread): for them ``Deferred.fromCoroutine`` and its
callback chain cost more than the operation itself. ``drive`` runs the
coroutine directly until it either ends or awaits a Deferred that has not
fired; only then does it attach itself to that Deferred, and resume the
coroutine when it fires. ``Deferred.__await__`` reads the result from the
Deferred itself when resumed (and clears a failure's "unhandled" mark), so the
coroutine sees exactly what ``await`` would have given it under Twisted's own
driver.
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

    def resume() -> None:
        while True:
            try:
                waiting = coro.send(None)
            except StopIteration:
                finished()
                return
            except BaseException:  # what the operation raised: answered by ``failed``
                failed(Failure())  # type: ignore[no-untyped-call]
                finished()
                return
            if not isinstance(waiting, Deferred):
                coro.close()
                failed(Failure(TypeError(f"an operation awaited {waiting!r}")))  # type: ignore[no-untyped-call]
                finished()
                return
            if waiting.called and not waiting.paused:
                continue  # fired meanwhile: its result is there to be read
            waiting.addBoth(_resumed, resume)
            return

    resume()


def _resumed(result: object, resume: Callable[[], None]) -> object:
    # The Deferred keeps its result: the coroutine reads it from there.
    resume()
    return result
