"""Re-entrant transactions on one connection: a block inside a block joins it, and only the outermost block
commits (or rolls back, without hiding the error that made the rollback necessary)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Transactions"]


class Transactions:
    """Mixed into a source: ``_transaction()`` over the source's ``_begin``, ``_commit`` and ``_rollback``.
    ``_depth`` says how many blocks are open (0: statements run on their own)."""

    _depth: int = 0

    def _begin(self) -> None:
        """Start a transaction (DB-API connections start one implicitly)."""

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._begin()
        self._depth = 1
        try:
            yield
            self._depth = 0
            self._commit()
        except BaseException:
            self._rollback()
            raise
        finally:
            self._depth = 0
