"""The app's records: projects, their stages and storyboards, providers, generated images.

Plain dataclasses read from the app's own SQLite file (see ``records.py``). The names
follow seed 004 (``Project``, ``ProjectStage``, ``Storyboard``, ``ModelProvider``,
``GeneratedImage``, ``StageResult``, ``PipelineContext``), and ``GeneratedImage.objects``
is a tiny Django-style manager so the seed's own test runs as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from examples.storyboard.records import Records

#: ``ProjectStage.stage_type`` of the stage this app runs, and of the one it needs done.
IMAGE_STAGE = "image_generation"
STORYBOARD_STAGE = "storyboard"

# ProjectStage.status
STAGE_PENDING = "pending"
STAGE_PROCESSING = "processing"
STAGE_COMPLETED = "completed"
STAGE_PARTIAL = "partial"
STAGE_FAILED = "failed"

# GeneratedImage.status
IMAGE_PENDING = "pending"
IMAGE_PROCESSING = "processing"
IMAGE_COMPLETED = "completed"
IMAGE_FAILED = "failed"

#: ``ModelProvider.provider_type`` of text-to-image providers.
TEXT2IMAGE = "text2image"


@dataclass(frozen=True, slots=True)
class ModelProvider:
    """A configured image gateway (OpenAI-compatible ``POST {api_url}/images/generations``).

    The key itself is never stored: ``api_key_env`` names the environment variable that
    holds it (the seed passes it as the gateway's ``session_id``, i.e. the bearer token).
    """

    id: str
    name: str
    provider_type: str
    api_url: str
    model_name: str
    api_key_env: str
    is_default: bool = False
    is_active: bool = True


@dataclass(frozen=True, slots=True)
class Project:
    """A project. ``image_providers`` is its model config (``ProjectModelConfig``): provider
    names tried before the system default."""

    id: str
    name: str
    image_providers: tuple[str, ...] = ()
    created_at: str = ""


@dataclass(frozen=True, slots=True)
class ProjectStage:
    """One stage of a project's pipeline (``storyboard``, ``image_generation``…)."""

    id: str
    project_id: str
    stage_type: str
    status: str
    started_at: str | None = None
    finished_at: str | None = None
    run_id: str | None = None

    def to_event(self) -> dict[str, Any]:
        """The ``stage`` object of ``stage_update`` and ``done`` events."""
        return {
            "id": self.id,
            "status": self.status,
            "stage_type": self.stage_type,
            "started_at": self.started_at,
        }


@dataclass(frozen=True, slots=True)
class Storyboard:
    """One storyboard of a project; ``image_prompt`` is its text-to-image prompt."""

    id: str
    project_id: str
    sequence_number: int
    image_prompt: str | None
    negative_prompt: str | None = None
    custom_params: Mapping[str, Any] = field(default_factory=dict)
    scene_description: str | None = None


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One image generated (or being generated) for a storyboard, by one stage run.

    ``status``: ``pending`` / ``processing`` / ``completed`` / ``failed``. ``image_url``
    is the app's own route to the bytes (``/images/<id>/file``, served by the FastAPI and
    the Django app), never a gateway's URL, which expires; the bytes are a regen artifact
    (``artifact_sha256``, ``file_path``). ``cached``: served from the result cache.
    """

    id: str
    storyboard_id: str
    run_id: str
    status: str
    image_url: str | None = None
    thumbnail_url: str | None = None
    width: int | None = None
    height: int | None = None
    file_size: int | None = None
    generation_params: Mapping[str, Any] = field(default_factory=dict)
    model_provider: str | None = None
    artifact_sha256: str | None = None
    file_path: str | None = None
    error: str | None = None
    cached: bool = False
    attempts: int = 0
    created_at: str = ""
    updated_at: str = ""

    #: The Django-style manager: ``GeneratedImage.objects.filter(storyboard=...)``.
    objects: ClassVar[ImageManager]

    @property
    def storyboard(self) -> str:
        """The storyboard's id (a foreign key in the seed's model)."""
        return self.storyboard_id

    @property
    def url(self) -> str | None:
        """Same as ``image_url``."""
        return self.image_url

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record."""
        return {
            "id": self.id,
            "storyboard_id": self.storyboard_id,
            "run_id": self.run_id,
            "status": self.status,
            "image_url": self.image_url,
            "thumbnail_url": self.thumbnail_url,
            "width": self.width,
            "height": self.height,
            "file_size": self.file_size,
            "generation_params": dict(self.generation_params),
            "model_provider": self.model_provider,
            "artifact_sha256": self.artifact_sha256,
            "error": self.error,
            "cached": self.cached,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


class ImageManager:
    """``GeneratedImage.objects``: ``filter(storyboard=…)``, ``get(id=…)``, ``all()``.

    Reads the default app's records (``STORYBOARD_HOME``); synchronous, like Django's
    ORM, so async code wraps it in ``sync_to_async`` (or calls ``Records`` directly).
    Lookups: ``id``, ``storyboard`` (a ``Storyboard`` or its id), ``storyboard_id``,
    ``run_id``, ``status``, ``project_id``.
    """

    def __init__(self, records: Records | None = None) -> None:
        self._records = records

    def _db(self) -> Records:
        if self._records is not None:
            return self._records
        from examples.storyboard.app import default_app  # noqa: PLC0415 - avoids a cycle

        return default_app().records

    def filter(self, **lookups: Any) -> list[GeneratedImage]:
        """The images matching every lookup, oldest first."""
        storyboard = lookups.pop("storyboard", None)
        if storyboard is not None:
            lookups["storyboard_id"] = getattr(storyboard, "id", storyboard)
        return self._db().images(**lookups)

    def all(self) -> list[GeneratedImage]:
        """Every image record."""
        return self._db().images()

    def get(self, **lookups: Any) -> GeneratedImage:
        """The one image matching the lookups (``LookupError`` if none or several)."""
        found = self.filter(**lookups)
        if len(found) != 1:
            raise LookupError(f"GeneratedImage.objects.get({lookups}): {len(found)} matches")
        return found[0]

    def count(self, **lookups: Any) -> int:
        """How many images match."""
        return len(self.filter(**lookups))


GeneratedImage.objects = ImageManager()


@dataclass(slots=True)
class StageResult:
    """What a stage run returns (seed: ``StageResult(success=True, data={...})``).

    ``success`` is true when the stage ended ``completed`` or ``partial``. ``data`` holds
    ``total_storyboards``, ``success_count``, ``failed_count`` and ``generated_image_ids``.
    ``error`` says why a failed stage failed (a validation message, or the failures).
    """

    success: bool
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    message: str = ""
    stage: dict[str, Any] | None = None
    run_id: str | None = None

    @property
    def status(self) -> str | None:
        """The stage's status (``completed`` / ``partial`` / ``failed``), if it ran."""
        return None if self.stage is None else self.stage.get("status")


@dataclass(slots=True)
class PipelineContext:
    """What a pipeline hands each stage: the project, optionally a subset of storyboards,
    and the results of the stages run so far (by ``stage_type``)."""

    project_id: str
    storyboard_ids: list[str] | None = None
    results: dict[str, StageResult] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StageKey:
    """The business key of a project's stage run, and the storyboards it is for (JSON)."""

    key: str
    selection: str
