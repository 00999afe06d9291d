"""Provider adapters on the retry core: OpenAI-compatible chat and images, DashScope image
tasks, a generic submit-and-poll helper, a safe image downloader, an image pipeline, and a
registry that resolves provider names to adapters with masked keys, and per provider a
circuit breaker, a rate limit shared by every worker, adaptive concurrency and fallback
chains (:class:`Guard`, kept in a :class:`SharedState`).

Every request goes through one :class:`Transport` (an ``aiohttp`` session), bounded by the
current attempt's time left; every failure is raised as a :class:`ProviderError` that
carries its classified :class:`regen.retry.Failure`.
"""

from __future__ import annotations

from regen.foundation import sniff
from regen.providers._base import BaseProvider, GeneratedImage
from regen.providers._breaker import (
    OUTAGE_KINDS,
    BreakerSettings,
    breaker_key,
    breaker_status,
)
from regen.providers._concurrency import AdaptiveLimit
from regen.providers._config import KINDS, ProviderConfig
from regen.providers._dashscope import DashScopeProvider, TaskStatus
from regen.providers._download import (
    DEFAULT_DOWNLOAD_TIMEOUT,
    DEFAULT_MAX_BYTES,
    Image,
    download_image,
    image_from_bytes,
)
from regen.providers._errors import (
    APIError,
    BadContent,
    BadResponse,
    ProviderError,
    TaskError,
    TaskFailed,
    TaskTimeout,
    TaskUnknown,
    Throttled,
    TransportError,
    Unavailable,
)
from regen.providers._fallback import Served, serving
from regen.providers._guard import Guard
from regen.providers._images import ImageInfo, image_info
from regen.providers._limiter import LimitSettings, limit_key
from regen.providers._openai import ChatResult, OpenAIProvider
from regen.providers._pipeline import ImageGenerator, ImagePipeline, ImageResult
from regen.providers._registry import Registry, openai_client_kwargs
from regen.providers._secret import Secret
from regen.providers._shared_state import MemoryState, SharedState
from regen.providers._sse import ServerSentEvent, SSEDecoder
from regen.providers._stream import StreamChunk, StreamEvent, StreamReset, retry_stream
from regen.providers._tasks import Polling, TaskState, poll_until_done, submit_and_poll
from regen.providers._transport import Response, StreamingResponse, Transport, redact_url

__all__ = [
    "DEFAULT_DOWNLOAD_TIMEOUT",
    "DEFAULT_MAX_BYTES",
    "KINDS",
    "OUTAGE_KINDS",
    "APIError",
    "AdaptiveLimit",
    "BadContent",
    "BadResponse",
    "BaseProvider",
    "BreakerSettings",
    "ChatResult",
    "DashScopeProvider",
    "GeneratedImage",
    "Guard",
    "Image",
    "ImageGenerator",
    "ImageInfo",
    "ImagePipeline",
    "ImageResult",
    "LimitSettings",
    "MemoryState",
    "OpenAIProvider",
    "Polling",
    "ProviderConfig",
    "ProviderError",
    "Registry",
    "Response",
    "SSEDecoder",
    "Secret",
    "Served",
    "ServerSentEvent",
    "SharedState",
    "StreamChunk",
    "StreamEvent",
    "StreamReset",
    "StreamingResponse",
    "TaskError",
    "TaskFailed",
    "TaskState",
    "TaskStatus",
    "TaskTimeout",
    "TaskUnknown",
    "Throttled",
    "Transport",
    "TransportError",
    "Unavailable",
    "breaker_key",
    "breaker_status",
    "download_image",
    "image_from_bytes",
    "image_info",
    "limit_key",
    "openai_client_kwargs",
    "poll_until_done",
    "redact_url",
    "retry_stream",
    "serving",
    "sniff",
    "submit_and_poll",
]
