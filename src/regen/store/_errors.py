"""Errors of the store.

::

    RegenError                     (regen.foundation)
    └── StoreError                 the store could not do what was asked
        ├── DatabaseUnusable       the database file cannot be used as it is; nothing was changed
        │   ├── CorruptDatabase    not an SQLite file, or damaged
        │   ├── NotARegenDatabase  an SQLite file that belongs to something else
        │   └── SchemaTooNew       written by a newer regen: upgrade regen, or use another file
        ├── ReadOnlyStore          the data directory or file cannot be written
        ├── StoreBusy              another process held the database lock past the busy timeout
        ├── DatabaseUnreachable    the database server could not be reached for a while
        ├── RunNotFound            no run has that id
        ├── InvalidTransition      the run's status forbids that (retry of a running run, …)
        └── LeaseLost              this process no longer holds the run's lease
"""

from __future__ import annotations

from typing import Any

from regen.foundation import RegenError

#: Where a user sets the database URL, for the messages that ask to fix it.
URL_SET_BY = "set by REGEN_DATABASE_URL, or --database-url before the command"


class StoreError(RegenError):
    """The store could not do what was asked."""


class DatabaseUnusable(StoreError):
    """The database file cannot be used as it is; it was left untouched."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, str(self).removeprefix(f"{self.path}: ")))


class CorruptDatabase(DatabaseUnusable):
    """The file is not an SQLite database, or is damaged."""


class NotARegenDatabase(DatabaseUnusable):
    """The file is an SQLite database that regen did not create."""


class SchemaTooNew(DatabaseUnusable):
    """The database was written by a newer regen (its schema version is above ours)."""


class SchemaTooOld(DatabaseUnusable):
    """The database's schema is behind this regen's (or missing) and was not upgraded:
    ``REGEN_DB_AUTO_UPGRADE=0``, or opened for reading only; ``regen db upgrade`` does it."""


class ReadOnlyStore(StoreError):
    """The data directory or the database file cannot be written."""


class StoreBusy(StoreError):
    """Another process held the database lock longer than the busy timeout."""


class DatabaseUnreachable(StoreError):
    """The database server could not be reached (restarting, a network cut) for longer
    than the store waits for it: weather, worth trying again later."""


class RunNotFound(StoreError):
    """No run has that id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.run_id,))


class InvalidTransition(StoreError):
    """The run's status forbids what was asked (a retry of a running run, a double retry…)."""

    def __init__(self, run_id: str, status: str, message: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.run_id, self.status, str(self)))


class LeaseLost(StoreError):
    """This process no longer holds the run's lease: another may have taken the run over."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"run {run_id}: lease lost (it expired or the run was taken over); "
            "this process stops writing to it"
        )
        self.run_id = run_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.run_id,))
