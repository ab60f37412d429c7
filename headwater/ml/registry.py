"""The model registry: versions, aliases that move with their history, and the validation gate.

A model version is an artifact (estimator + fitted feature state, see
:mod:`headwater.ml.artifacts`) with what made it: signature, training-data profile,
metrics, parameters, lineage, author. Versions count 1, 2, ... per model name.
Aliases (``champion``, ``challenger``, any name) point at versions; every move is
kept with who and why. ``champion`` may only point at an ``approved`` version: a
person approves (:meth:`ModelRegistry.promote`) or a policy decides
(:meth:`ModelRegistry.evaluate_policy` with, e.g., :class:`BetterThanChampion`); a
rejected version stays registered with its reason.

References name a version: ``house_prices:3`` (version 3), ``house_prices@champion``
(where the alias points) or ``house_prices`` (the newest version).

Conventions the policies read (the training helper writes them): ``metrics`` is
``{split: {metric: value}}`` (``{"test": {"rmse": 0.41, "mae": 0.3}}``), and the data
each split was measured on is ``lineage["splits"][split]["data_hash"]`` (or a
``data_hash`` entry inside ``metrics[split]``).

The port is :class:`ModelRegistry`; :class:`headwater.ml.registry_sql.SqlModelRegistry`
implements it on the metadata database (SQLite or PostgreSQL), ``open_registry(settings)``
opens the one of a headwater home, and ``memory_registry()`` makes one that lives in the
process only (in-memory SQLite, fsspec ``memory://``) for tests and notebooks.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from headwater.errors import UserError
from headwater.ml.artifacts import ModelArtifact

CHAMPION = "champion"
REGISTERED, APPROVED, REJECTED = "registered", "approved", "rejected"
STATUSES = (REGISTERED, APPROVED, REJECTED)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,249}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,249}$")


class RegistryError(UserError):
    """A registry operation was asked something it cannot do."""


class ModelNotFoundError(RegistryError):
    """No model has this name."""


class ModelVersionNotFoundError(RegistryError):
    """The model has no such version."""


class AliasNotFoundError(RegistryError):
    """The model has no such alias."""


class ValidationGateError(RegistryError):
    """The move would bypass the validation gate (an unapproved champion, a rejected version)."""


@dataclass(slots=True)
class ModelVersion:
    """One registered version of a model, with what made it and its review status."""

    name: str
    version: int
    artifact_uri: str
    checksum: str
    format: str
    signature: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    status: str = REGISTERED
    status_reason: str = ""
    status_by: str | None = None
    status_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    author: str = ""

    @property
    def ref(self) -> str:
        """``name:version``, the reference that always means this version."""
        return f"{self.name}:{self.version}"

    def metric(self, split: str, name: str) -> float | None:
        """The value of metric ``name`` on ``split``, or None when it was not recorded."""
        values = self.metrics.get(split)
        value = values.get(name) if isinstance(values, dict) else None
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    def data_hash(self, split: str) -> str | None:
        """The hash of the data ``split`` was measured on, or None when it was not recorded."""
        in_metrics = self.metrics.get(split)
        if isinstance(in_metrics, dict) and in_metrics.get("data_hash"):
            return str(in_metrics["data_hash"])
        splits = self.lineage.get("splits")
        entry = splits.get(split) if isinstance(splits, dict) else None
        return str(entry["data_hash"]) if isinstance(entry, dict) and entry.get("data_hash") else None


@dataclass(slots=True)
class ModelAlias:
    """Where an alias of a model points now."""

    name: str
    alias: str
    version: int
    updated_at: dt.datetime
    updated_by: str


@dataclass(slots=True)
class AliasMove:
    """One move of an alias: from ``from_version`` (None: the alias was new) to ``to_version``."""

    name: str
    alias: str
    from_version: int | None
    to_version: int
    who: str
    why: str
    moved_at: dt.datetime


@dataclass(slots=True)
class ModelSummary:
    """A model in listings: how many versions, the newest, its aliases."""

    name: str
    versions: int
    latest: int
    updated_at: dt.datetime
    aliases: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A version and its artifact, read and checked."""

    version: ModelVersion
    estimator: Any
    feature_state: Any


@dataclass(frozen=True, slots=True)
class Decision:
    """What a policy decided about a candidate, and why (stored as the status reason)."""

    approved: bool
    reason: str


class Policy(Protocol):
    """An automatic validation gate: approve or reject a candidate against the champion."""

    @property
    def name(self) -> str: ...

    def evaluate(self, candidate: ModelVersion, champion: ModelVersion | None) -> Decision: ...


# Metrics where smaller is better; the others (accuracy, f1, roc_auc, r2, ...) are larger-is-better.
LOWER_IS_BETTER = frozenset({"rmse", "mse", "mae", "mape", "log_loss", "logloss", "brier", "error"})


@dataclass(frozen=True, slots=True)
class BetterThanChampion:
    """Approve a candidate whose ``metric`` on ``split`` beats the champion's by at least ``by`` (relative).

    ``by=0.02`` asks for 2% better: an RMSE at most 98% of the champion's, an accuracy
    at least 102% of it. With ``same_data`` (the default) both versions must record the
    hash of the split's data and the hashes must match, so the numbers are comparable.
    With no champion yet, a candidate that has the metric is approved.
    """

    metric: str
    by: float = 0.0
    split: str = "test"
    higher_is_better: bool | None = None  # None: from the metric's name
    same_data: bool = True

    @property
    def name(self) -> str:
        return f"BetterThanChampion({self.split} {self.metric}, by={self.by:g})"

    def evaluate(self, candidate: ModelVersion, champion: ModelVersion | None) -> Decision:
        label = f"{self.split} {self.metric}"
        ours = candidate.metric(self.split, self.metric)
        if ours is None:
            return Decision(False, f"version {candidate.version} has no {label} to compare")
        if champion is None:
            return Decision(True, f"no champion yet; {label} = {ours:.6g}")
        theirs = champion.metric(self.split, self.metric)
        if theirs is None:
            return Decision(False, f"champion version {champion.version} has no {label} to compare with")
        if self.same_data:
            a, b = candidate.data_hash(self.split), champion.data_hash(self.split)
            if a is None or b is None or a != b:
                return Decision(
                    False,
                    f"the {self.split} split differs from champion version {champion.version}'s "
                    f"(data hash {_short(a)} vs {_short(b)}); metrics on different data are not comparable",
                )
        higher = self.higher_is_better
        if higher is None:
            higher = self.metric.lower() not in LOWER_IS_BETTER
        gain = (ours - theirs) if higher else (theirs - ours)
        relative = gain / abs(theirs) if theirs else (float("inf") if gain > 0 else 0.0)
        verdict = gain > 0 and relative >= self.by - 1e-12  # 1e-12: 0.98 vs 1.0 is 2%, rounding aside
        text = (f"{label} {ours:.6g} vs champion version {champion.version} {theirs:.6g}: "
                f"{relative:+.2%} {'better' if gain >= 0 else 'worse'}, needs {self.by:+.2%}")
        return Decision(verdict, text)


def _short(digest: str | None) -> str:
    return "unrecorded" if digest is None else digest[:12]


def parse_ref(ref: str) -> tuple[str, int | None, str | None]:
    """``name:3`` -> (name, 3, None); ``name@alias`` -> (name, None, alias); ``name`` -> (name, None, None)."""
    hint = "write NAME, NAME:VERSION or NAME@ALIAS, e.g. house_prices@champion"
    if "@" in ref:
        name, alias = ref.split("@", 1)
        check_name(name)
        check_alias(alias)
        return name, None, alias
    if ":" in ref:
        name, version = ref.split(":", 1)
        check_name(name)
        if not version.isdigit() or int(version) < 1:
            raise RegistryError(f"{ref!r}: the version must be a number from 1", hint=hint)
        return name, int(version), None
    check_name(ref)
    return ref, None, None


def check_name(name: str) -> str:
    """``name`` if it is a valid model name (letters, digits, ``_ . -``), else a RegistryError."""
    if not _NAME.match(name):
        raise RegistryError(
            f"{name!r} is not a valid model name",
            hint="use letters, digits, '_', '.' and '-', starting with a letter or digit (at most 250)",
        )
    return name


def check_alias(alias: str) -> str:
    """``alias`` if it is a valid alias (starts with a letter), else a RegistryError."""
    if not _ALIAS.match(alias):
        raise RegistryError(
            f"{alias!r} is not a valid alias",
            hint="use letters, digits, '_', '.' and '-', starting with a letter (e.g. champion, challenger)",
        )
    return alias


def did_you_mean(word: str, known: Iterable[str]) -> str | None:
    """``did you mean 'x'?`` for the closest known word, or None."""
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"did you mean {close[0]!r}?" if close else None


class ModelRegistry(Protocol):
    """The model registry port: versions, aliases with history, the validation gate."""

    def register(
        self,
        name: str,
        artifact: ModelArtifact,
        signature: dict[str, Any] | None = None,
        profile: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        lineage: dict[str, Any] | None = None,
        author: str = "",
        *,
        format: str = "auto",
        allow_pickle: bool = False,
    ) -> ModelVersion:
        """Write the artifact and record a new version (the model's last version + 1), status ``registered``."""
        ...

    def get(self, name: str, version: int) -> ModelVersion:
        """One version; ModelNotFoundError / ModelVersionNotFoundError with a hint when unknown."""
        ...

    def resolve(self, ref: str) -> ModelVersion:
        """The version ``name:3``, ``name@alias`` or ``name`` (the newest) refers to."""
        ...

    def list_models(self) -> list[ModelSummary]:
        """Every model, by name."""
        ...

    def list_versions(self, name: str) -> list[ModelVersion]:
        """The versions of a model, oldest first."""
        ...

    def aliases(self, name: str) -> list[ModelAlias]:
        """The aliases of a model, by alias."""
        ...

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of the model's aliases (or of one), oldest first."""
        ...

    def set_alias(self, name: str, alias: str, version: int, *, who: str, why: str) -> AliasMove:
        """Point ``alias`` at ``version`` and record the move, atomically. ``champion`` needs an approved version."""
        ...

    def approve(self, name: str, version: int, *, who: str, reason: str, force: bool = False) -> ModelVersion:
        """Mark the version approved; a rejected one only with ``force`` (overruling the rejection)."""
        ...

    def reject(self, name: str, version: int, *, who: str, reason: str) -> ModelVersion:
        """Mark the version rejected (it stays registered); not while it is the champion."""
        ...

    def promote(self, name: str, version: int, *, who: str, reason: str, force: bool = False) -> ModelVersion:
        """Approve the version and move ``champion`` to it, in one transaction."""
        ...

    def evaluate_policy(
        self, name: str, version: int, policy: Policy, *, who: str = "policy", promote: bool = False
    ) -> Decision:
        """Let ``policy`` approve or reject the version against the champion; with ``promote``, an
        approved version becomes champion."""
        ...

    def verify(self, ref: str) -> dict[str, Any]:
        """Check the artifact of ``ref`` against the recorded checksum, decoding nothing; returns its manifest."""
        ...

    def load(self, ref: str, *, allow_pickle: bool = False, trusted: Sequence[str] = ()) -> LoadedModel:
        """Resolve ``ref`` and read its artifact, checked against the recorded checksum."""
        ...
