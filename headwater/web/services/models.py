"""The model registry: models, versions with metrics side by side, aliases and their history,
lineage and training profile; the human validation gate (approve, promote, reject with a reason)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from headwater.errors import UserError
from headwater.web.services.masking import mask_mapping

if TYPE_CHECKING:
    from headwater.ml.registry import ModelVersion
    from headwater.web.services.context import WebContext


@dataclass
class ModelInfo:
    """A model in the list."""

    name: str
    versions: int
    latest: int
    updated_at: dt.datetime
    aliases: dict[str, int] = field(default_factory=dict)


@dataclass
class VersionInfo:
    """One version: review status, metrics, params (secrets masked), lineage, profile and signature."""

    name: str
    version: int
    status: str
    status_reason: str
    status_by: str | None
    status_at: dt.datetime | None
    created_at: dt.datetime | None
    author: str
    format: str
    checksum: str
    aliases: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    signature: dict[str, Any] = field(default_factory=dict)


@dataclass
class AliasInfo:
    """Where an alias points now."""

    alias: str
    version: int
    updated_at: dt.datetime
    updated_by: str


@dataclass
class AliasMoveInfo:
    """One move of an alias, with who and why."""

    alias: str
    from_version: int | None
    to_version: int
    who: str
    why: str
    moved_at: dt.datetime


@dataclass
class ModelDetail:
    """A model: its versions (newest first), aliases, alias history (newest first), and a metrics
    table: ``metric_table[split][metric][version]``."""

    name: str
    versions: list[VersionInfo]
    aliases: list[AliasInfo]
    history: list[AliasMoveInfo]
    metric_table: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)


def list_models(ctx: WebContext) -> list[ModelInfo]:
    """Every registered model, by name."""
    return [ModelInfo(m.name, m.versions, m.latest, m.updated_at, dict(m.aliases))
            for m in ctx.registry.list_models()]


def get_model(ctx: WebContext, name: str) -> ModelDetail:
    """A model with every version, its aliases and their history."""
    reg = ctx.registry
    versions = reg.list_versions(name)  # ModelNotFoundError with a did-you-mean when unknown
    aliases = reg.aliases(name)
    by_version: dict[int, list[str]] = {}
    for a in aliases:
        by_version.setdefault(a.version, []).append(a.alias)
    infos = [version_info(v, by_version.get(v.version, [])) for v in reversed(versions)]
    table: dict[str, dict[str, dict[int, float]]] = {}
    for v in versions:
        for split, values in v.metrics.items():
            if not isinstance(values, dict):
                continue
            for metric in values:
                value = v.metric(split, metric)
                if value is not None:
                    table.setdefault(split, {}).setdefault(metric, {})[v.version] = value
    history = [AliasMoveInfo(h.alias, h.from_version, h.to_version, h.who, h.why, h.moved_at)
               for h in reversed(reg.alias_history(name))]
    return ModelDetail(name, infos, [AliasInfo(a.alias, a.version, a.updated_at, a.updated_by) for a in aliases],
                       history, table)


def get_version(ctx: WebContext, name: str, version: int) -> VersionInfo:
    """One version with everything recorded about it."""
    reg = ctx.registry
    mv = reg.get(name, version)
    return version_info(mv, [a.alias for a in reg.aliases(name) if a.version == version])


def decide(ctx: WebContext, name: str, version: int, action: str, *, who: str, reason: str,
           force: bool = False) -> VersionInfo:
    """The validation gate: ``approve``, ``promote`` (approve + champion) or ``reject``, with a reason."""
    reason = reason.strip()
    if not reason:
        raise UserError(f"{action} needs a reason", hint="say why; it is kept in the model's history")
    reg = ctx.registry
    if action == "approve":
        reg.approve(name, version, who=who, reason=reason, force=force)
    elif action == "promote":
        reg.promote(name, version, who=who, reason=reason, force=force)
    elif action == "reject":
        reg.reject(name, version, who=who, reason=reason)
    else:
        raise UserError(f"unknown action {action!r}", hint="approve, promote or reject")
    return get_version(ctx, name, version)


def version_info(mv: ModelVersion, aliases: list[str]) -> VersionInfo:
    return VersionInfo(
        name=mv.name, version=mv.version, status=mv.status, status_reason=mv.status_reason, status_by=mv.status_by,
        status_at=mv.status_at, created_at=mv.created_at, author=mv.author, format=mv.format, checksum=mv.checksum,
        aliases=sorted(aliases), metrics=mv.metrics, params=mask_mapping(mv.params),
        lineage=mask_mapping(mv.lineage), profile=mv.profile, signature=mv.signature,
    )
