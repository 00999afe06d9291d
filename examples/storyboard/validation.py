"""The checks made before any image is generated, and the plan they produce.

Seed 004's validation failures, each with a message that says what to fix: the project
does not exist; its ``storyboard`` stage is not completed; it has no storyboards; a
storyboard has no ``image_prompt``; no text-to-image provider is configured (neither in
the project's model config nor as the system default). Asking for storyboard ids the
project does not have is refused too.

The plan names the provider (the project's first, else the system default) and its
fallbacks: the other providers of that order whose key is set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from examples.storyboard.generation import ProviderInfo, request_id, request_key, request_params
from examples.storyboard.models import STAGE_COMPLETED, STORYBOARD_STAGE, TEXT2IMAGE
from examples.storyboard.records import Records, image_id
from regen.retry import ConfigError


class ValidationError(Exception):
    """The stage cannot start; ``code`` names the check that failed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.message))


@dataclass(frozen=True, slots=True)
class Plan:
    """What a stage run will do: its storyboards, grouped into distinct requests."""

    project_id: str
    provider: ProviderInfo
    storyboards: list[dict[str, Any]]
    groups: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "provider": self.provider.to_dict(),
            "storyboards": self.storyboards,
            "groups": self.groups,
        }


def resolve_provider(records: Records, image_providers: Sequence[str]) -> ProviderInfo:
    """The project's own provider first (its model config), else the system default."""
    for name in image_providers:
        provider = records.provider(name)
        if provider is None:
            raise ValidationError(
                "no_provider",
                f"项目模型配置 image_providers 中的文生图提供商 {name!r} 不存在："
                "请先添加该提供商，或从项目配置中移除它",
            )
        if provider.is_active and provider.provider_type == TEXT2IMAGE:
            return ProviderInfo.of(provider, "project")
    default = records.default_provider(TEXT2IMAGE)
    if default is None:
        raise ValidationError(
            "no_provider",
            "未配置文生图模型提供商：请在项目模型配置 (image_providers) 中指定，或添加 "
            "provider_type='text2image' 的系统默认提供商",
        )
    return ProviderInfo.of(default, "system")


def with_fallback(
    records: Records,
    image_providers: Sequence[str],
    provider: ProviderInfo,
    environ: Mapping[str, str] | None = None,
) -> ProviderInfo:
    """``provider`` with its fallbacks: the project's other text-to-image providers, then
    the system default — those active and whose key is set in ``environ`` (default: the
    process environment). A second provider is a fallback only once its key is set."""
    env = os.environ if environ is None else environ
    candidates = [records.provider(name) for name in image_providers]
    candidates.append(records.default_provider(TEXT2IMAGE))
    chosen: dict[str, ProviderInfo] = {}
    for other in candidates:
        if (
            other is None
            or other.name == provider.name
            or other.name in chosen
            or not (other.is_active and other.provider_type == TEXT2IMAGE)
            or not env.get(other.api_key_env)
        ):
            continue
        source = "project" if other.name in image_providers else "system"
        chosen[other.name] = ProviderInfo.of(other, source)
    return replace(provider, fallback=tuple(chosen.values()))


def plan(
    records: Records,
    project_id: str,
    storyboard_ids: Sequence[str] | None,
    run_id: str,
    *,
    environ: Mapping[str, str] | None = None,
) -> Plan:
    """Check everything the stage needs, in the seed's order; :class:`ValidationError`.
    The provider's key is looked up in ``environ`` (default: the process environment)."""
    project = records.project(project_id)
    if project is None:
        raise ValidationError("project_not_found", f"项目不存在：{project_id}")
    stage = records.stage(project_id, STORYBOARD_STAGE)
    if stage is None or stage.status != STAGE_COMPLETED:
        status = "不存在" if stage is None else stage.status
        raise ValidationError(
            "storyboard_stage_incomplete",
            f"前置阶段 storyboard 未完成（当前状态：{status}）：请先完成分镜阶段",
        )
    storyboards = records.storyboards(project_id)
    if storyboard_ids is not None:
        wanted = list(dict.fromkeys(storyboard_ids))
        known = {sb.id for sb in storyboards}
        missing = [sid for sid in wanted if sid not in known]
        if missing:
            raise ValidationError(
                "unknown_storyboards", f"项目 {project_id} 中没有这些分镜：{', '.join(missing)}"
            )
        chosen = set(wanted)
        storyboards = [sb for sb in storyboards if sb.id in chosen]
    if not storyboards:
        raise ValidationError("no_storyboards", f"项目 {project_id} 没有分镜数据：请先生成分镜")
    unprompted = [sb for sb in storyboards if not (sb.image_prompt or "").strip()]
    if unprompted:
        names = ", ".join(f"#{sb.sequence_number} ({sb.id})" for sb in unprompted)
        raise ValidationError("missing_image_prompt", f"分镜缺少文生图提示词 image_prompt：{names}")
    provider = resolve_provider(records, project.image_providers)
    try:
        provider.api_key(environ)
    except ConfigError as exc:
        raise ValidationError(
            "no_provider",
            f"文生图提供商 {provider.name!r} 缺少 API Key：请设置环境变量 {provider.api_key_env}",
        ) from exc
    provider = with_fallback(records, project.image_providers, provider, environ)
    entries: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    for position, sb in enumerate(storyboards, start=1):
        prompt = (sb.image_prompt or "").strip()
        params = request_params(sb)
        key = request_key(provider, prompt, params)
        rid = request_id(key)
        entry = {
            "id": sb.id,
            "sequence_number": sb.sequence_number,
            "image_prompt": prompt,
            "position": position,
            "image_id": image_id(run_id, sb.id),
            "params": {"model": provider.model_name, "prompt": prompt, **params},
            "request": rid,
        }
        entries.append(entry)
        group = groups.get(rid)
        if group is None:
            group = groups[rid] = {
                "id": rid,
                "prompt": prompt,
                "params": params,
                "key": key,
                "storyboards": [],
            }
        group["storyboards"].append(
            {k: entry[k] for k in ("id", "sequence_number", "image_prompt", "position", "image_id")}
        )
    return Plan(project_id, provider, entries, list(groups.values()))
