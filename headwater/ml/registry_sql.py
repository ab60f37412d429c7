"""The model registry on the metadata database (the tables of migration 0002).

Versions are numbered in a write transaction that serialises the writers of one model:
on SQLite it starts with ``BEGIN IMMEDIATE``; on PostgreSQL it takes a transaction-level
advisory lock on the model's name (and a clash on the primary key is still retried).
Alias moves, status changes and their history rows are written in one transaction
each, under the same lock, with the rows read ``FOR UPDATE``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from headwater.clock import Clock, SystemClock
from headwater.errors import StoreError
from headwater.ml import artifacts
from headwater.ml.registry import (
    APPROVED,
    CHAMPION,
    REGISTERED,
    REJECTED,
    AliasMove,
    AliasNotFoundError,
    Decision,
    LoadedModel,
    ModelAlias,
    ModelNotFoundError,
    ModelRegistry,
    ModelSummary,
    ModelVersion,
    ModelVersionNotFoundError,
    Policy,
    RegistryError,
    ValidationGateError,
    check_alias,
    check_name,
    did_you_mean,
    parse_ref,
)
from headwater.store import schema as s
from headwater.store.engine import WRITE

if TYPE_CHECKING:
    from headwater.settings import Settings
    from headwater.store.sql import SqlStore

_RETRIES = 5  # a unique-key clash despite the lock (a writer of another headwater version) is retried
_PG_LOCK_NS = 0x6D6F64  # "mod": the advisory-lock namespace of model writes
_V = s.model_versions
_A = s.model_aliases
_H = s.model_alias_history


def open_registry(settings: Settings, *, artifact_root: str | Path | None = None) -> SqlModelRegistry:
    """The registry in the metadata database of ``settings``, artifacts under
    ``artifact_root`` (default ``$HEADWATER_HOME/models``; any fsspec URL, e.g. ``s3://bucket/models``)."""
    from headwater.store.sql import open_store

    settings.home.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.db_url, create=True)
    return SqlModelRegistry(store, artifact_root or settings.home / "models")


def memory_registry() -> SqlModelRegistry:
    """A registry that lives in this process only: an in-memory SQLite database and fsspec's
    ``memory://`` filesystem. The same code as the real one, for tests and notebooks."""
    import uuid

    from headwater.store.sql import open_store

    return SqlModelRegistry(open_store("sqlite://", create=True), f"memory://headwater-{uuid.uuid4().hex}/models")


class SqlModelRegistry:
    """:class:`~headwater.ml.registry.ModelRegistry` on a :class:`~headwater.store.sql.SqlStore`."""

    def __init__(self, store: SqlStore, artifact_root: str | Path, *, clock: Clock | None = None) -> None:
        self.store = store
        self.artifact_root = str(artifact_root).rstrip("/")
        self._clock = clock or SystemClock()
        self._read_engine = store.engine
        self._write_engine = store.engine.execution_options(**{WRITE: True})

    def __repr__(self) -> str:
        return f"SqlModelRegistry({self.store.safe_url!r}, artifacts={self.artifact_root!r})"

    def artifact_uri(self, name: str, version: int) -> str:
        """Where the artifact of ``name`` version ``version`` is written."""
        return f"{self.artifact_root}/{name}/{version}"

    # -- versions

    def register(
        self,
        name: str,
        artifact: artifacts.ModelArtifact,
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
        """Record a new version and write its artifact.

        Step 1. Serialise the artifact (fails before anything is recorded).
        Step 2. In one write transaction, take the last version + 1 and insert the row.
        Step 3. Write the artifact at its version's place; if that fails, delete the row,
        so no version points at an artifact that was never written. (Between steps 2 and
        3 a reader may see the version before its artifact: loading it then says missing.)
        """
        check_name(name)
        # Step 1.
        records = {"signature": signature, "profile": profile, "metrics": metrics, "params": params,
                   "lineage": lineage}
        for field_name, value in records.items():
            _check_json(field_name, value)
        packed = artifacts.pack(artifact, format=format, allow_pickle=allow_pickle)
        row: dict[str, Any] = {k: v or {} for k, v in records.items()} | {
            "name": name, "checksum": packed.checksum, "format": packed.format, "status": REGISTERED,
            "status_reason": "", "status_by": None, "status_at": None, "created_at": self._clock.now(),
            "author": author,
        }
        # Step 2.
        for attempt in _attempts():
            try:
                with self._begin(f"register a version of model {name}", write=True) as conn:
                    self._lock(conn, name)
                    last = conn.execute(select(func.max(_V.c.version)).where(_V.c.name == name)).scalar()
                    row["version"] = (last or 0) + 1
                    row["artifact_uri"] = self.artifact_uri(name, row["version"])
                    conn.execute(insert(_V), row)
                break
            except StoreError as exc:
                _retry_or_raise(exc, attempt)
        # Step 3.
        try:
            artifacts.write(row["artifact_uri"], packed)
        except BaseException:
            with self._begin(f"forget version {row['version']} of model {name}", write=True) as conn:
                conn.execute(delete(_V).where(_V.c.name == name, _V.c.version == row["version"]))
            raise
        return ModelVersion(**row)

    def get(self, name: str, version: int) -> ModelVersion:
        """One version; a clear error naming the known versions when it does not exist."""
        with self._begin(f"read version {version} of model {name}") as conn:
            return self._version(conn, name, version)

    def resolve(self, ref: str) -> ModelVersion:
        """The version ``name:3``, ``name@alias`` or ``name`` (its newest version) refers to."""
        name, version, alias = parse_ref(ref)
        with self._begin(f"resolve the model {ref}") as conn:
            if version is not None:
                return self._version(conn, name, version)
            if alias is not None:
                return self._version(conn, name, self._alias(conn, name, alias))
            last = conn.execute(select(func.max(_V.c.version)).where(_V.c.name == name)).scalar()
            if last is None:
                raise self._unknown_model(conn, name)
            return self._version(conn, name, int(last))

    def list_models(self) -> list[ModelSummary]:
        """Every model, by name, with its number of versions, newest version and aliases."""
        query = (
            select(_V.c.name, func.count().label("n"), func.max(_V.c.version).label("latest"),
                   func.max(_V.c.created_at).label("updated"))
            .group_by(_V.c.name).order_by(_V.c.name)
        )
        with self._begin("list the models") as conn:
            rows = conn.execute(query).all()
            aliases = conn.execute(select(_A.c.name, _A.c.alias, _A.c.version).order_by(_A.c.alias)).all()
        out = {r.name: ModelSummary(r.name, int(r.n), int(r.latest), r.updated) for r in rows}
        for a in aliases:
            if a.name in out:
                out[a.name].aliases[a.alias] = int(a.version)
        return list(out.values())

    def list_versions(self, name: str) -> list[ModelVersion]:
        """The versions of a model, oldest first; ModelNotFoundError when it has none."""
        with self._begin(f"list the versions of model {name}") as conn:
            rows = conn.execute(select(_V).where(_V.c.name == name).order_by(_V.c.version)).mappings().all()
            if not rows:
                raise self._unknown_model(conn, name)
        return [_record(r) for r in rows]

    # -- aliases

    def aliases(self, name: str) -> list[ModelAlias]:
        """The aliases of a model, by alias."""
        with self._begin(f"read the aliases of model {name}") as conn:
            rows = conn.execute(select(_A).where(_A.c.name == name).order_by(_A.c.alias)).mappings().all()
        return [ModelAlias(**r) for r in rows]

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of the model's aliases (or of ``alias``), oldest first."""
        query = select(_H).where(_H.c.name == name).order_by(_H.c.id)
        if alias is not None:
            query = query.where(_H.c.alias == alias)
        with self._begin(f"read the alias history of model {name}") as conn:
            rows = conn.execute(query).mappings().all()
        return [AliasMove(**{k: v for k, v in r.items() if k != "id"}) for r in rows]

    def set_alias(self, name: str, alias: str, version: int, *, who: str, why: str) -> AliasMove:
        """Point ``alias`` at ``version`` and record the move; ``champion`` needs an approved version."""
        check_alias(alias)
        for attempt in _attempts():
            try:
                with self._begin(f"move the alias {alias} of model {name}", write=True) as conn:
                    self._lock(conn, name)
                    return self._move(conn, self._version(conn, name, version, lock=True), alias, who, why)
            except StoreError as exc:
                _retry_or_raise(exc, attempt)
        raise AssertionError("unreachable")

    # -- the validation gate

    def approve(self, name: str, version: int, *, who: str, reason: str, force: bool = False) -> ModelVersion:
        """Mark the version approved (a rejected one only with ``force``)."""
        with self._begin(f"approve version {version} of model {name}", write=True) as conn:
            return self._approve(conn, self._version(conn, name, version, lock=True), who, reason, force)

    def reject(self, name: str, version: int, *, who: str, reason: str) -> ModelVersion:
        """Mark the version rejected, with the reason; it stays registered. Not the champion."""
        with self._begin(f"reject version {version} of model {name}", write=True) as conn:
            mv = self._version(conn, name, version, lock=True)
            champion = conn.execute(select(_A.c.version).where(_A.c.name == name, _A.c.alias == CHAMPION)).scalar()
            if champion == version:
                raise ValidationGateError(
                    f"version {version} of model {name!r} is the champion and cannot be rejected",
                    hint=f"promote another approved version first: headwater models promote {name} VERSION",
                )
            return self._set_status(conn, mv, REJECTED, who, reason)

    def promote(self, name: str, version: int, *, who: str, reason: str, force: bool = False) -> ModelVersion:
        """Approve the version and move ``champion`` to it, in one transaction."""
        for attempt in _attempts():
            try:
                with self._begin(f"promote version {version} of model {name}", write=True) as conn:
                    self._lock(conn, name)
                    mv = self._approve(conn, self._version(conn, name, version, lock=True), who, reason, force)
                    self._move(conn, mv, CHAMPION, who, reason)
                    return mv
            except StoreError as exc:
                _retry_or_raise(exc, attempt)
        raise AssertionError("unreachable")

    def evaluate_policy(
        self, name: str, version: int, policy: Policy, *, who: str = "policy", promote: bool = False
    ) -> Decision:
        """Let ``policy`` judge the version against the current champion and record its decision.

        Approved: status ``approved`` (and champion with ``promote``); rejected: status
        ``rejected``. The reason stored is the policy's name and its explanation.
        """
        candidate = self.get(name, version)
        try:
            champion: ModelVersion | None = self.resolve(f"{name}@{CHAMPION}")
        except AliasNotFoundError:
            champion = None
        if champion is not None and champion.version == version:
            return Decision(True, f"version {version} is already the champion")
        decision = policy.evaluate(candidate, champion)
        reason = f"{policy.name}: {decision.reason}"
        if not decision.approved:
            self.reject(name, version, who=who, reason=reason)
        elif promote:
            self.promote(name, version, who=who, reason=reason)
        else:
            self.approve(name, version, who=who, reason=reason)
        return dataclasses.replace(decision, reason=reason)

    # -- artifacts

    def load(self, ref: str, *, allow_pickle: bool = False, trusted: Sequence[str] = ()) -> LoadedModel:
        """Resolve ``ref`` and read its artifact, checked against the recorded checksum."""
        mv = self.resolve(ref)
        art = artifacts.load(mv.artifact_uri, checksum=mv.checksum, label=f"model {mv.name} version {mv.version}",
                             allow_pickle=allow_pickle, trusted=trusted)
        return LoadedModel(mv, art.estimator, art.feature_state)

    def verify(self, ref: str) -> dict[str, Any]:
        """Check the artifact of ``ref`` against the recorded checksum without decoding it; returns
        its manifest, or raises ArtifactMissingError / ArtifactCorruptError / ArtifactFormatError."""
        mv = self.resolve(ref)
        manifest, _ = artifacts.verify(mv.artifact_uri, checksum=mv.checksum,
                                       label=f"model {mv.name} version {mv.version}")
        return manifest

    # -- helpers

    def _approve(self, conn: Connection, mv: ModelVersion, who: str, reason: str, force: bool) -> ModelVersion:
        if mv.status == REJECTED and not force:
            raise ValidationGateError(
                f"version {mv.version} of model {mv.name!r} was rejected ({mv.status_reason or 'no reason given'}) "
                f"and cannot be approved or promoted",
                hint="overrule the rejection with --force (force=True), or register a new version",
            )
        return self._set_status(conn, mv, APPROVED, who, reason)

    def _set_status(self, conn: Connection, mv: ModelVersion, status: str, who: str, reason: str) -> ModelVersion:
        now = self._clock.now()
        values: dict[str, Any] = {"status": status, "status_reason": reason, "status_by": who, "status_at": now}
        conn.execute(update(_V).where(_V.c.name == mv.name, _V.c.version == mv.version).values(**values))
        return dataclasses.replace(mv, **values)

    def _move(self, conn: Connection, mv: ModelVersion, alias: str, who: str, why: str) -> AliasMove:
        if alias == CHAMPION and mv.status != APPROVED:
            raise ValidationGateError(
                f"version {mv.version} of model {mv.name!r} is {mv.status}, and only an approved version can be "
                f"{CHAMPION}" + (f" (rejected: {mv.status_reason})" if mv.status == REJECTED else ""),
                hint=f"approve it first, or use: headwater models promote {mv.name} {mv.version} --reason ...",
            )
        now = self._clock.now()
        query = select(_A.c.version).where(_A.c.name == mv.name, _A.c.alias == alias)
        current = conn.execute(query.with_for_update()).scalar()
        if current is None:
            conn.execute(insert(_A), {"name": mv.name, "alias": alias, "version": mv.version,
                                      "updated_at": now, "updated_by": who})
        else:
            conn.execute(update(_A).where(_A.c.name == mv.name, _A.c.alias == alias)
                         .values(version=mv.version, updated_at=now, updated_by=who))
        move = AliasMove(mv.name, alias, None if current is None else int(current), mv.version, who, why, now)
        conn.execute(insert(_H), dataclasses.asdict(move))
        return move

    def _version(self, conn: Connection, name: str, version: int, *, lock: bool = False) -> ModelVersion:
        query = select(_V).where(_V.c.name == name, _V.c.version == version)
        row = conn.execute(query.with_for_update() if lock else query).mappings().first()
        if row is not None:
            return _record(row)
        known = [int(v) for v in conn.execute(select(_V.c.version).where(_V.c.name == name).order_by(_V.c.version))
                 .scalars()]
        if not known:
            raise self._unknown_model(conn, name)
        shown = ", ".join(map(str, known[-10:])) + (" (newest 10)" if len(known) > 10 else "")
        raise ModelVersionNotFoundError(
            f"model {name!r} has no version {version}", hint=f"its versions: {shown}"
        )

    def _alias(self, conn: Connection, name: str, alias: str) -> int:
        version = conn.execute(select(_A.c.version).where(_A.c.name == name, _A.c.alias == alias)).scalar()
        if version is not None:
            return int(version)
        if conn.execute(select(_V.c.version).where(_V.c.name == name).limit(1)).first() is None:
            raise self._unknown_model(conn, name)
        known = list(conn.execute(select(_A.c.alias).where(_A.c.name == name).order_by(_A.c.alias)).scalars())
        hint = did_you_mean(alias, known) or (
            f"its aliases: {', '.join(known)}" if known else f"it has no aliases yet: headwater models promote {name} "
            "VERSION --reason ... makes one")
        raise AliasNotFoundError(f"model {name!r} has no alias {alias!r}", hint=hint)

    def _unknown_model(self, conn: Connection, name: str) -> RegistryError:
        known = list(conn.execute(select(_V.c.name).distinct().order_by(_V.c.name)).scalars())
        hint = did_you_mean(name, known) or ("run `headwater models list` to see the models" if known
                                              else "no model is registered yet")
        return ModelNotFoundError(f"no model named {name!r} is registered", hint=hint)

    def _lock(self, conn: Connection, name: str) -> None:
        """PostgreSQL: serialise the writers of one model until commit (SQLite's BEGIN IMMEDIATE already does)."""
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:ns, hashtext(:name))"), {"ns": _PG_LOCK_NS, "name": name})

    @contextmanager
    def _begin(self, what: str, *, write: bool = False) -> Iterator[Connection]:
        """One transaction; SQLAlchemy errors become StoreError naming the database."""
        engine = self._write_engine if write else self._read_engine
        try:
            with engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None) or exc
            detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
            low = detail.lower()
            hint = "run `headwater db upgrade`" if "no such table" in low or "does not exist" in low else None
            raise StoreError(f"could not {what}: {detail} (database {self.store.safe_url})", hint=hint) from exc


def _check_json(field_name: str, value: Any) -> None:
    import json

    if value is not None and not isinstance(value, dict):
        raise RegistryError(f"{field_name} must be a dict, not {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise RegistryError(
            f"{field_name} cannot be stored as JSON: {exc}",
            hint="use plain str, int, float, bool, None, lists and dicts (float(x) for NumPy numbers)",
        ) from exc


def _attempts() -> range:
    return range(_RETRIES)


def _retry_or_raise(exc: StoreError, attempt: int) -> None:
    """Retry when a concurrent writer won a unique key (PostgreSQL: two first moves of one alias,
    two registrations reading the same last version); raise anything else, or after the last try."""
    if not isinstance(exc.__cause__, IntegrityError) or attempt == _RETRIES - 1:
        raise exc


def _record(row: RowMapping) -> ModelVersion:
    return ModelVersion(**row)


def _implements_the_port(registry: SqlModelRegistry) -> ModelRegistry:
    return registry  # mypy checks here that SqlModelRegistry has every method of the port
