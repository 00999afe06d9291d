"""The store: where runs, checkpoints, events, artifacts and cached results are kept.

One interface, :class:`Store` (every method a coroutine); two implementations with the
same behaviour: :class:`SQLiteStore` (one file, the processes of one machine) and
:class:`PostgresStore` (workers on many machines; the ``postgres`` extra).
"""

from __future__ import annotations

from regen.store._blobs import Blobs
from regen.store._errors import (
    CorruptDatabase,
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
from regen.store._interface import Listener, Store
from regen.store._location import check_database, database_url, home, open_store
from regen.store._postgres import PostgresStore
from regen.store._records import (
    AddEvent,
    AddItems,
    Artifact,
    Claimed,
    ClaimedItems,
    Commit,
    Count,
    CountAttempt,
    EndItem,
    EndRun,
    EndStep,
    Event,
    GcCounts,
    HealthCheck,
    Item,
    ItemLease,
    ItemStatus,
    Lease,
    LinkArtifact,
    NewRun,
    OpenItems,
    PutCache,
    Run,
    RunStatus,
    SkipItems,
    StartItem,
    StartStep,
    Step,
    StepStatus,
    Write,
)
from regen.store._sqlite import SQLiteStore

__all__ = [
    "AddEvent",
    "AddItems",
    "Artifact",
    "Blobs",
    "Claimed",
    "ClaimedItems",
    "Commit",
    "CorruptDatabase",
    "Count",
    "CountAttempt",
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
    "ItemLease",
    "ItemStatus",
    "Lease",
    "LeaseLost",
    "LinkArtifact",
    "Listener",
    "NewRun",
    "NotARegenDatabase",
    "OpenItems",
    "PostgresStore",
    "PutCache",
    "ReadOnlyStore",
    "Run",
    "RunNotFound",
    "RunStatus",
    "SQLiteStore",
    "SchemaTooNew",
    "SkipItems",
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
