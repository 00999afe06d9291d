"""The store: where runs, checkpoints, events, artifacts and cached results are kept.

One interface, :class:`Store`; one implementation today, :class:`SQLiteStore`.
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
from regen.store._interface import Listener, Store
from regen.store._location import database_url, home, open_store
from regen.store._records import (
    AddEvent,
    Artifact,
    Batch,
    Claimed,
    Commit,
    CountAttempt,
    EndItem,
    EndRun,
    EndStep,
    Event,
    GcCounts,
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
    "Batch",
    "Blobs",
    "Claimed",
    "Commit",
    "CorruptDatabase",
    "CountAttempt",
    "DatabaseUnusable",
    "EndItem",
    "EndRun",
    "EndStep",
    "Event",
    "GcCounts",
    "InvalidTransition",
    "Item",
    "ItemStatus",
    "Lease",
    "LeaseLost",
    "LinkArtifact",
    "Listener",
    "NewRun",
    "NotARegenDatabase",
    "PutCache",
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
    "database_url",
    "home",
    "open_store",
]
