"""Two workers at once, for the tests of writers side by side (two refreshes, two ticks, two dispatchers)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def at_once(*calls: Callable[[], Any], refused: type[BaseException] | tuple[type[BaseException], ...] = ()) -> list[Any]:
    """Run ``calls`` in threads released together by a barrier; each one's result, or the ``refused`` error it
    raised (none by default).  Any other error is a failure of the calling test: it is raised here, naming which
    call raised it."""
    start = threading.Barrier(len(calls))
    outcomes: list[Any] = [None] * len(calls)
    unexpected: list[tuple[int, BaseException]] = []

    def run(i: int) -> None:
        start.wait(timeout=60)
        try:
            outcomes[i] = calls[i]()
        except refused as error:
            outcomes[i] = error
        except Exception as error:  # a driver error where the library promises its own
            unexpected.append((i, error))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if unexpected:
        i, error = unexpected[0]
        raise AssertionError(f"call {i} raised {error!r}; the others gave {outcomes}") from error
    return outcomes


def once_claimed(store: Any, then: Callable[[], Any], *, first: bool = False) -> list[Any]:
    """The next ``store.claim`` (a membership store's) runs ``then`` after it took the rows, uncommitted (``first``:
    before it claims); returns the list that ``then``'s result goes into."""
    claim = store.claim
    results: list[Any] = []

    def hooked(expected: Any) -> None:
        store.claim = claim
        if first:
            results.append(then())
        claim(expected)
        if not first:
            results.append(then())

    store.claim = hooked
    return results
