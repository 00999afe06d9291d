"""The store: where runs, checkpoints, events, artifacts and cached results are kept.

One interface, :class:`Store` (every method a coroutine); two implementations with the
same behaviour: :class:`SQLiteStore` (one file, the processes of one machine) and
:class:`PostgresStore` (workers on many machines; the ``postgres`` extra).
"""

from __future__ import annotations

from regen.store._blobs import Blobs
from regen.store._errors import (
    CorruptDatabase,
    DatabaseUnreachable,
    DatabaseUnusable,
    InvalidTransition,
    LeaseLost,
    NotARegenDatabase,
    ReadOnlyStore,
    RunNotFound,
    SchemaTooNew,
    StoreBusy,
    StoreError,
)
from regen.store._event_types import EventType
from regen.store._interface import Listener, QueueListener, Store
from regen.store._location import check_database, database_url, home, open_store
from regen.store._postgres import PostgresStore
from regen.store._records import (
    AddEvent,
    Artifact,
    Claimed,
    Commit,
    CountAttempt,
    EndItem,
    EndRun,
    EndStep,
    Event,
    GcCounts,
    HealthCheck,
    Item,
    ItemStatus,
    Lease,
    LinkArtifact,
    NewRun,
    PutCache,
    Run,
    RunStatus,
    StartItem,
    StartStep,
    Step,
    StepStatus,
    Write,
)
from regen.store._sqlite import SQLiteStore

__all__ = [
    "AddEvent",
    "Artifact",
    "Blobs",
    "Claimed",
    "Commit",
    "CorruptDatabase",
    "CountAttempt",
    "DatabaseUnreachable",
    "DatabaseUnusable",
    "EndItem",
    "EndRun",
    "EndStep",
    "Event",
    "EventType",
    "GcCounts",
    "HealthCheck",
    "InvalidTransition",
    "Item",
    "ItemStatus",
    "Lease",
    "LeaseLost",
    "LinkArtifact",
    "Listener",
    "NewRun",
    "NotARegenDatabase",
    "PostgresStore",
    "PutCache",
    "QueueListener",
    "ReadOnlyStore",
    "Run",
    "RunNotFound",
    "RunStatus",
    "SQLiteStore",
    "SchemaTooNew",
    "StartItem",
    "StartStep",
    "Step",
    "StepStatus",
    "Store",
    "StoreBusy",
    "StoreError",
    "Write",
    "check_database",
    "database_url",
    "home",
    "open_store",
]
