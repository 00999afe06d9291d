"""The app's own SQLite file (``<home>/storyboard.db``): projects, stages, storyboards,
providers and image records.

regen keeps the runs, checkpoints, event log, artifacts and result cache in its own
store (``<home>/regen.db``); this file keeps what the app itself is about. Every call
opens a short-lived connection, so the records are safe to use from any thread (the
event loop, ``sync_to_async``, a Django or FastAPI worker).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from examples.storyboard.models import (
    IMAGE_COMPLETED,
    IMAGE_FAILED,
    IMAGE_PENDING,
    IMAGE_PROCESSING,
    IMAGE_STAGE,
    STAGE_COMPLETED,
    STAGE_PROCESSING,
    STORYBOARD_STAGE,
    TEXT2IMAGE,
    GeneratedImage,
    ModelProvider,
    Project,
    ProjectStage,
    StageKey,
    Storyboard,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS model_providers (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    provider_type TEXT NOT NULL,
    api_url       TEXT NOT NULL,
    model_name    TEXT NOT NULL,
    api_key_env   TEXT NOT NULL,
    is_default    INTEGER NOT NULL DEFAULT 0,
    is_active     INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS projects (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    image_providers TEXT NOT NULL DEFAULT '[]',
    created_at      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS project_stages (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    stage_type  TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  TEXT,
    finished_at TEXT,
    run_id      TEXT,
    result      TEXT,
    UNIQUE (project_id, stage_type)
);
CREATE TABLE IF NOT EXISTS storyboards (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    sequence_number   INTEGER NOT NULL,
    scene_description TEXT,
    image_prompt      TEXT,
    negative_prompt   TEXT,
    custom_params     TEXT NOT NULL DEFAULT '{}',
    created_at        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS generated_images (
    id                TEXT PRIMARY KEY,
    storyboard_id     TEXT NOT NULL REFERENCES storyboards(id) ON DELETE CASCADE,
    run_id            TEXT NOT NULL,
    status            TEXT NOT NULL,
    image_url         TEXT,
    thumbnail_url     TEXT,
    width             INTEGER,
    height            INTEGER,
    file_size         INTEGER,
    generation_params TEXT NOT NULL DEFAULT '{}',
    model_provider    TEXT,
    artifact_sha256   TEXT,
    file_path         TEXT,
    error             TEXT,
    cached            INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    position          INTEGER NOT NULL DEFAULT 0,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    UNIQUE (run_id, storyboard_id)
);
-- The business key of each project's latest stage run, and the storyboards it is for.
CREATE TABLE IF NOT EXISTS stage_run_keys (
    project_id TEXT PRIMARY KEY,
    key        TEXT NOT NULL,
    selection  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS generated_images_storyboard ON generated_images (storyboard_id);
CREATE INDEX IF NOT EXISTS storyboards_project ON storyboards (project_id, sequence_number);
"""

#: The app's file inside its data directory (regen's store is ``regen.db`` beside it).
RECORDS_FILE = "storyboard.db"

# Image ids are derived from (run, storyboard), so a step that runs again after a crash
# finds the records it made instead of making new ones.
_IMAGE_IDS = uuid.UUID("5f0c3a52-6d1e-4f6b-9a43-2d7c1b0e8f11")
_IMAGE_COLUMNS = (
    "id, storyboard_id, run_id, status, image_url, thumbnail_url, width, height, file_size, "
    "generation_params, model_provider, artifact_sha256, file_path, error, cached, attempts, "
    "created_at, updated_at"
)
_LOOKUPS = {
    "id": "id = ?",
    "storyboard_id": "storyboard_id = ?",
    "run_id": "run_id = ?",
    "status": "status = ?",
    "project_id": "storyboard_id IN (SELECT id FROM storyboards WHERE project_id = ?)",
}


#: Where the apps (FastAPI and Django) serve an image's bytes: what a record's ``image_url``
#: and an ``image_generated`` event's ``url`` say. A gateway's own URL expires; this one
#: does not, and a cached image has no gateway URL of its own.
IMAGE_FILE_ROUTE = "/images/{image_id}/file"


def image_file_url(image_id: str) -> str:
    """The app's URL of an image's bytes."""
    return IMAGE_FILE_ROUTE.format(image_id=image_id)


def now_iso() -> str:
    """The current time as ISO 8601 with a UTC offset (what the events carry)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def image_id(run_id: str, storyboard_id: str) -> str:
    """The id of the image record a run makes for a storyboard (a UUID)."""
    return str(uuid.uuid5(_IMAGE_IDS, f"{run_id}/{storyboard_id}"))


def _image(row: sqlite3.Row) -> GeneratedImage:
    return GeneratedImage(
        id=row["id"],
        storyboard_id=row["storyboard_id"],
        run_id=row["run_id"],
        status=row["status"],
        image_url=row["image_url"],
        thumbnail_url=row["thumbnail_url"],
        width=row["width"],
        height=row["height"],
        file_size=row["file_size"],
        generation_params=json.loads(row["generation_params"]),
        model_provider=row["model_provider"],
        artifact_sha256=row["artifact_sha256"],
        file_path=row["file_path"],
        error=row["error"],
        cached=bool(row["cached"]),
        attempts=row["attempts"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _storyboard(row: sqlite3.Row) -> Storyboard:
    return Storyboard(
        id=row["id"],
        project_id=row["project_id"],
        sequence_number=row["sequence_number"],
        image_prompt=row["image_prompt"],
        negative_prompt=row["negative_prompt"],
        custom_params=json.loads(row["custom_params"]),
        scene_description=row["scene_description"],
    )


def _stage(row: sqlite3.Row) -> ProjectStage:
    return ProjectStage(
        id=row["id"],
        project_id=row["project_id"],
        stage_type=row["stage_type"],
        status=row["status"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        run_id=row["run_id"],
    )


def _provider(row: sqlite3.Row) -> ModelProvider:
    return ModelProvider(
        id=row["id"],
        name=row["name"],
        provider_type=row["provider_type"],
        api_url=row["api_url"],
        model_name=row["model_name"],
        api_key_env=row["api_key_env"],
        is_default=bool(row["is_default"]),
        is_active=bool(row["is_active"]),
    )


class Records:
    """The app's SQLite file. ``Records.at(path)`` shares one instance per file."""

    _open: dict[Path, Records] = {}  # noqa: RUF012 - a process-wide registry, by design
    _open_lock = threading.Lock()

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            # WAL: readers (an SSE view listing images) never wait for the writer.
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @classmethod
    def at(cls, path: str | Path) -> Records:
        """The records in ``path``, opened once per process."""
        key = Path(path).resolve()
        with cls._open_lock:
            records = cls._open.get(key)
            if records is None:
                records = cls._open[key] = cls(key)
            return records

    def __repr__(self) -> str:
        return f"Records({str(self.path)!r})"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            # Foreign keys are off by default in SQLite; the cascades above rely on them.
            db.execute("PRAGMA foreign_keys=ON")
            # Concurrent writers (items finishing together) wait instead of failing.
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            # IMMEDIATE: take the write lock up front, so read-then-write never deadlocks.
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # --- providers -------------------------------------------------------------------------

    def add_provider(
        self,
        name: str,
        *,
        api_url: str,
        model_name: str,
        api_key_env: str,
        provider_type: str = TEXT2IMAGE,
        is_default: bool = False,
        is_active: bool = True,
    ) -> ModelProvider:
        """Declare (or replace, by name) a provider."""
        if not api_url.startswith(("http://", "https://")):
            raise ValueError(f"provider {name!r}: api_url={api_url!r} is not an http(s) URL")
        with self._transaction() as db:
            row = db.execute("SELECT id FROM model_providers WHERE name = ?", (name,)).fetchone()
            provider_id = row["id"] if row else str(uuid.uuid4())
            db.execute(
                "INSERT OR REPLACE INTO model_providers (id, name, provider_type, api_url, "
                "model_name, api_key_env, is_default, is_active, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    provider_id,
                    name,
                    provider_type,
                    api_url.rstrip("/"),
                    model_name,
                    api_key_env,
                    int(is_default),
                    int(is_active),
                    now_iso(),
                ),
            )
        provider = self.provider(name)
        assert provider is not None
        return provider

    def provider(self, name: str) -> ModelProvider | None:
        """The provider called ``name``."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM model_providers WHERE name = ?", (name,)).fetchone()
        return None if row is None else _provider(row)

    def default_provider(self, provider_type: str = TEXT2IMAGE) -> ModelProvider | None:
        """The system default: an active provider of that type, ``is_default`` ones first."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM model_providers WHERE provider_type = ? AND is_active = 1 "
                "ORDER BY is_default DESC, created_at, name LIMIT 1",
                (provider_type,),
            ).fetchone()
        return None if row is None else _provider(row)

    # --- projects, stages, storyboards -----------------------------------------------------

    def create_project(
        self,
        name: str = "project",
        *,
        image_providers: Sequence[str] = (),
        storyboard_stage: str | None = STAGE_COMPLETED,
    ) -> Project:
        """A new project; ``storyboard_stage`` is the status of its ``storyboard`` stage
        (``None``: no such stage yet)."""
        project = Project(str(uuid.uuid4()), name, tuple(image_providers), now_iso())
        with self._transaction() as db:
            db.execute(
                "INSERT INTO projects (id, name, image_providers, created_at) VALUES (?, ?, ?, ?)",
                (project.id, name, json.dumps(list(image_providers)), project.created_at),
            )
        if storyboard_stage is not None:
            self.set_stage(project.id, STORYBOARD_STAGE, storyboard_stage)
        return project

    def project(self, project_id: str) -> Project | None:
        """The project, or ``None``."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM projects WHERE id = ?", (project_id,)).fetchone()
        if row is None:
            return None
        return Project(
            row["id"], row["name"], tuple(json.loads(row["image_providers"])), row["created_at"]
        )

    def set_project_providers(self, project_id: str, names: Sequence[str]) -> None:
        """Set the project's model config (``image_providers``)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE projects SET image_providers = ? WHERE id = ?",
                (json.dumps(list(names)), project_id),
            )

    def set_stage(self, project_id: str, stage_type: str, status: str) -> ProjectStage:
        """Create or update a stage's status."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO project_stages (id, project_id, stage_type, status) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (project_id, stage_type) "
                "DO UPDATE SET status = excluded.status",
                (str(uuid.uuid4()), project_id, stage_type, status),
            )
        stage = self.stage(project_id, stage_type)
        assert stage is not None
        return stage

    def stage(self, project_id: str, stage_type: str = IMAGE_STAGE) -> ProjectStage | None:
        """A project's stage of that type, or ``None``."""
        with self._connect() as db:
            row = db.execute(
                "SELECT * FROM project_stages WHERE project_id = ? AND stage_type = ?",
                (project_id, stage_type),
            ).fetchone()
        return None if row is None else _stage(row)

    def stage_result(self, project_id: str) -> dict[str, Any] | None:
        """The result the image stage recorded when it last finished."""
        with self._connect() as db:
            row = db.execute(
                "SELECT result FROM project_stages WHERE project_id = ? AND stage_type = ?",
                (project_id, IMAGE_STAGE),
            ).fetchone()
        return None if row is None or row["result"] is None else json.loads(row["result"])

    def stage_run_key(self, project_id: str) -> StageKey | None:
        """The business key of the project's latest stage run, and what it was for."""
        with self._connect() as db:
            row = db.execute(
                "SELECT key, selection FROM stage_run_keys WHERE project_id = ?", (project_id,)
            ).fetchone()
        return None if row is None else StageKey(str(row["key"]), str(row["selection"]))

    def claim_stage_key(
        self, project_id: str, selection: str, *, replacing: str | None
    ) -> StageKey:
        """Name the project's next stage run (a new business key for ``selection``), unless
        another caller did since the key ``replacing`` was read: then that key is returned.
        One write transaction holds the check and the claim, so concurrent callers, in any
        thread or process, end up with one key (and regen makes one run per key)."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT key, selection FROM stage_run_keys WHERE project_id = ?", (project_id,)
            ).fetchone()
            if row is not None and row["key"] != replacing:
                return StageKey(str(row["key"]), str(row["selection"]))
            key = f"{project_id}:{uuid.uuid4().hex}"
            db.execute(
                "INSERT INTO stage_run_keys (project_id, key, selection) VALUES (?, ?, ?) "
                "ON CONFLICT (project_id) DO UPDATE SET key = excluded.key, "
                "selection = excluded.selection",
                (project_id, key, selection),
            )
            return StageKey(key, selection)

    def start_stage(self, project_id: str, run_id: str) -> ProjectStage:
        """Mark the image stage ``processing`` for ``run_id`` (a new ``started_at``)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO project_stages (id, project_id, stage_type, status, started_at, "
                "run_id) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (project_id, stage_type) "
                "DO UPDATE SET status = excluded.status, started_at = excluded.started_at, "
                "finished_at = NULL, run_id = excluded.run_id, result = NULL",
                (str(uuid.uuid4()), project_id, IMAGE_STAGE, STAGE_PROCESSING, now_iso(), run_id),
            )
        stage = self.stage(project_id)
        assert stage is not None
        return stage

    def finish_stage(
        self, stage_id: str, run_id: str, status: str, result: Mapping[str, Any]
    ) -> bool:
        """End the stage of ``run_id``; ``False`` when it was not ``processing`` for that run
        (already ended: the caller must not announce it twice)."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE project_stages SET status = ?, finished_at = ?, result = ? "
                "WHERE id = ? AND run_id = ? AND status = ?",
                (
                    status,
                    now_iso(),
                    json.dumps(dict(result), ensure_ascii=False),
                    stage_id,
                    run_id,
                    STAGE_PROCESSING,
                ),
            )
            return cursor.rowcount == 1

    def add_storyboard(
        self,
        project_id: str,
        image_prompt: str | None,
        *,
        sequence_number: int | None = None,
        negative_prompt: str | None = None,
        custom_params: Mapping[str, Any] | None = None,
        scene_description: str | None = None,
    ) -> Storyboard:
        """A new storyboard at the end of the project (or at ``sequence_number``)."""
        params = dict(custom_params or {})
        storyboard_id = str(uuid.uuid4())
        with self._transaction() as db:
            if sequence_number is None:
                row = db.execute(
                    "SELECT COALESCE(MAX(sequence_number), 0) + 1 AS next FROM storyboards "
                    "WHERE project_id = ?",
                    (project_id,),
                ).fetchone()
                sequence_number = int(row["next"])
            db.execute(
                "INSERT INTO storyboards (id, project_id, sequence_number, scene_description, "
                "image_prompt, negative_prompt, custom_params, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    storyboard_id,
                    project_id,
                    sequence_number,
                    scene_description,
                    image_prompt,
                    negative_prompt,
                    json.dumps(params, ensure_ascii=False),
                    now_iso(),
                ),
            )
        return Storyboard(
            storyboard_id,
            project_id,
            sequence_number,
            image_prompt,
            negative_prompt,
            params,
            scene_description,
        )

    def storyboards(self, project_id: str) -> list[Storyboard]:
        """The project's storyboards in sequence order."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM storyboards WHERE project_id = ? ORDER BY sequence_number, "
                "created_at",
                (project_id,),
            ).fetchall()
        return [_storyboard(row) for row in rows]

    # --- image records ---------------------------------------------------------------------

    def ensure_images(
        self,
        run_id: str,
        storyboards: Iterable[tuple[str, int]],
        params: Mapping[str, Mapping[str, Any]],
        provider: str,
    ) -> None:
        """Create the run's ``pending`` records, one per ``(storyboard_id, position)``;
        records that already exist are kept."""
        at = now_iso()
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO generated_images (id, storyboard_id, run_id, status, "
                "generation_params, model_provider, position, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        image_id(run_id, sid),
                        sid,
                        run_id,
                        IMAGE_PENDING,
                        json.dumps(dict(params[sid]), ensure_ascii=False),
                        provider,
                        position,
                        at,
                        at,
                    )
                    for sid, position in storyboards
                ],
            )

    def reset_unfinished(self, run_id: str, *, keep: Iterable[str] = ()) -> int:
        """Put the run's records that did not complete back to ``pending`` (they run
        again), except those in ``keep``; how many were reset."""
        kept = set(keep)
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id FROM generated_images WHERE run_id = ? AND status IN (?, ?)",
                (run_id, IMAGE_PROCESSING, IMAGE_FAILED),
            ).fetchall()
            again = [row["id"] for row in rows if row["id"] not in kept]
            db.executemany(
                "UPDATE generated_images SET status = ?, error = NULL, updated_at = ? WHERE id = ?",
                [(IMAGE_PENDING, now_iso(), image) for image in again],
            )
            return len(again)

    def mark_processing(self, ids: Sequence[str], attempt: int) -> None:
        """Records whose generation is under way (``attempt``: its number)."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE generated_images SET status = ?, attempts = ?, error = NULL, "
                "updated_at = ? WHERE id = ?",
                [(IMAGE_PROCESSING, attempt, now_iso(), i) for i in ids],
            )

    def complete_images(
        self,
        ids: Sequence[str],
        *,
        width: int | None,
        height: int | None,
        file_size: int,
        artifact_sha256: str,
        file_path: str,
        cached: bool,
        attempts: int,
        model_provider: str | None = None,
    ) -> None:
        """Records whose image is in hand; their ``image_url`` is the app's file route
        (:func:`image_file_url`), whatever the gateway's URL was. ``model_provider``: the
        provider that made the image (a fallback's name while the stage's was down);
        ``None`` keeps the stage's."""
        at = now_iso()
        with self._transaction() as db:
            db.executemany(
                "UPDATE generated_images SET status = ?, image_url = ?, width = ?, height = ?, "
                "file_size = ?, artifact_sha256 = ?, file_path = ?, cached = ?, attempts = ?, "
                "model_provider = COALESCE(?, model_provider), error = NULL, updated_at = ? "
                "WHERE id = ?",
                [
                    (
                        IMAGE_COMPLETED,
                        image_file_url(i),
                        width,
                        height,
                        file_size,
                        artifact_sha256,
                        file_path,
                        int(cached),
                        attempts,
                        model_provider,
                        at,
                        i,
                    )
                    for i in ids
                ],
            )

    def fail_images(self, ids: Sequence[str], error: str, attempts: int) -> None:
        """Records whose generation gave up."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE generated_images SET status = ?, error = ?, attempts = ?, updated_at = ? "
                "WHERE id = ?",
                [(IMAGE_FAILED, error, attempts, now_iso(), i) for i in ids],
            )

    def run_images(self, run_id: str) -> list[GeneratedImage]:
        """The run's records in storyboard order."""
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {_IMAGE_COLUMNS} FROM generated_images WHERE run_id = ? ORDER BY position",
                (run_id,),
            ).fetchall()
        return [_image(row) for row in rows]

    def images(self, **lookups: Any) -> list[GeneratedImage]:
        """Records matching every lookup (see ``_LOOKUPS``), oldest first."""
        unknown = set(lookups) - set(_LOOKUPS)
        if unknown:
            raise TypeError(
                f"unknown image lookup(s) {sorted(unknown)}; "
                f"supported: {', '.join(sorted(_LOOKUPS))}"
            )
        where = " AND ".join(_LOOKUPS[name] for name in lookups) or "1"
        with self._connect() as db:
            rows = db.execute(
                f"SELECT {_IMAGE_COLUMNS} FROM generated_images WHERE {where} "
                "ORDER BY created_at, position",
                tuple(lookups.values()),
            ).fetchall()
        return [_image(row) for row in rows]

    def failed_storyboard_ids(self, project_id: str) -> list[str]:
        """Storyboards of the project whose latest image record failed (to regenerate)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT s.id, (SELECT g.status FROM generated_images g WHERE g.storyboard_id = "
                "s.id ORDER BY g.created_at DESC, g.rowid DESC LIMIT 1) AS latest "
                "FROM storyboards s WHERE s.project_id = ? ORDER BY s.sequence_number",
                (project_id,),
            ).fetchall()
        return [row["id"] for row in rows if row["latest"] == IMAGE_FAILED]
