"""Data checks and drift monitoring inside a stream app: ``Stream.check`` and ``Stream.monitor_drift``.

``Stream.check(profile, policy=...)`` is the :class:`Check` step: every chunk is checked
with :class:`~headwater.quality.checks.ProfileChecks` in one vectorised pass; per kind of
violation the policy says whether a record is **flagged** (it goes on, its codes in the
``column`` list) or **dead-lettered** (to ``<app>.dlq`` with a
:class:`~headwater.quality.checks.DataCheckError` naming the violations and values).
It is a batch step: a JSON source it reads first decodes straight into a frame. The
records go on with their exact values all the same: from the frame when it holds them
exactly (:func:`~headwater.stream.serde.exact_frame`, the usual batch), else decoded again
from their bytes (a field of two JSON types in one batch, a null, an absent field: a frame
would give ``3`` as ``3.0``, a number as text, an absent field as null).

``Stream.monitor_drift(profile, ...)`` is the :class:`DriftNode`: a node with two ports.
Port 0 passes the records on untouched (same chunks: values, keys, headers, even the
original bytes); port 1 carries the alert records of a
:class:`~headwater.quality.drift.DriftMonitor`, which ``monitor_drift`` connects to an
ordinary sink (``to(alerts_topic)``). An alert is a record derived from the input record
whose arrival triggered the evaluation (like a ``flat_map`` output): it has that record's
timestamp and headers, and the feature name as its key. So alerts go through the same
produce/flush/commit path as every output, with no change to the kernel. The window lives
in memory: after a restart it fills again from the records that follow, and an app run as
several instances has one window per process, over the partitions that process reads.
Evaluations happen as records arrive (``every_seconds`` is checked when a batch comes), so
an idle stream raises no alert.

Metrics
-------
Both steps keep plain counters; :func:`quality_metrics(app) <quality_metrics>` gathers them
for an app, keyed by step name (``name=`` of the step; by default ``check`` and
``monitor_drift``)::

    {"check": {"kind": "check", "model_version": "house_prices:3", "rows_checked": 1000,
               "rows_flagged": 12, "rows_dead_lettered": 3,
               "violations": {"range": {"sqft_living": 2}, "unseen": {"zipcode": 10}}},
     "monitor_drift": {"kind": "drift", "model_version": "house_prices:3", "window_size": 1000,
                       "evaluations": 10, "alerts": 1, "alerting": ["sqft_living:psi"],
                       "last": {"sqft_living": {"psi": 0.91, "mean_shift": 0.93, ...}}}}

``model_version`` is the version whose profile is in use when the step follows a registry
reference (None otherwise). Counters: ``rows_*``, ``violations``, ``evaluations``,
``alerts`` (cumulative; a drift monitor that switched to a new version's profile starts
again from 0); gauges: ``window_size``, ``last``, ``alerting``. The Prometheus exporter
(:mod:`headwater.monitoring.stream`) reads ``Check.snapshot()`` of every step of kind
``check`` at scrape time and counts the records the drift node writes on its alert port.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import polars as pl

from headwater.clock import Clock
from headwater.quality.checks import KINDS, CheckConfigError, CheckSummary, DataCheckError, ProfileChecks
from headwater.quality.drift import DriftConfigError, DriftMonitor
from headwater.quality.source import Fixed, Follow
from headwater.stream.chunk import Chunk, Context, isolate
from headwater.stream.dsl import Node
from headwater.stream.serde import Json, exact_frame
from headwater.stream.steps import BatchStep

POLICIES = ("flag", "dead_letter")


def policy_per_kind(policy: str | Mapping[str, str]) -> dict[str, str]:
    """``"flag"``, ``"dead_letter"``, or kind -> policy (kinds not named are flagged)."""
    if isinstance(policy, str):
        given = dict.fromkeys(KINDS, policy)
    elif isinstance(policy, Mapping):
        unknown = sorted(set(policy) - set(KINDS))
        if unknown:
            raise CheckConfigError(f"check(policy=...) names unknown kinds {unknown}",
                                   hint=f"the kinds are {', '.join(KINDS)}")
        given = {kind: policy.get(kind, "flag") for kind in KINDS}
    else:
        raise CheckConfigError(f"check(policy=...) takes 'flag', 'dead_letter' or a mapping, got {policy!r}")
    bad = sorted({p for p in given.values() if p not in POLICIES})
    if bad:
        raise CheckConfigError(f"unknown check policy {bad}",
                               hint="'flag' lets the record go on with its violations listed, "
                                    "'dead_letter' sends it to the app's dead-letter topic")
    return given


def _checks_of(source: Any, options: Mapping[str, Any]) -> ProfileChecks:
    if hasattr(source, "profile") and hasattr(source, "signature"):
        return ProfileChecks(source.profile, **{"signature": source.signature, **options})
    return ProfileChecks(source, **options)


def as_checks(
    source: Any, options: Mapping[str, Any], *, registry: Any = None, reload_interval: float = 5.0,
    clock: Clock | None = None,
) -> Fixed[ProfileChecks] | Follow[ProfileChecks]:
    """Checks from ready ProfileChecks, a profile document, a model version, or a registry reference (followed)."""
    if isinstance(source, ProfileChecks):
        if options:
            raise CheckConfigError(f"check(): options {sorted(options)} given with ready ProfileChecks",
                                   hint="pass them to ProfileChecks(...) instead")
        return Fixed(source)
    if isinstance(source, str):
        _reload_interval(reload_interval)
        return Follow(source, lambda mv: _checks_of(mv, options), registry=registry, reload_interval=reload_interval,
                      clock=clock)
    return Fixed(_checks_of(source, options))


def _reload_interval(seconds: Any) -> None:
    if not isinstance(seconds, int | float) or seconds < 0:
        raise CheckConfigError(f"reload_interval must be seconds >= 0, got {seconds!r}")


class Check(BatchStep):
    """The step behind :meth:`headwater.stream.dsl.Stream.check` (see the module docstring)."""

    kind = "check"
    # Tells the topology to have a JSON source it reads first mark the frames that hold the
    # records' values exactly (headwater.stream.serde.exact_frame): the others are decoded again.
    passes_values = True

    def __init__(self, name: str, checks: ProfileChecks | Fixed[ProfileChecks] | Follow[ProfileChecks], *,
                 policy: str | Mapping[str, str] = "flag", column: str = "data_checks") -> None:
        super().__init__(name)
        self.source = Fixed(checks) if isinstance(checks, ProfileChecks) else checks
        self.policy = policy_per_kind(policy)
        self.column = column
        # Only when some kind is flagged do records get the column; with dead_letter alone the
        # survivors are clean and pass on untouched (their original bytes, even).
        self.adds_column = "flag" in self.policy.values()
        self._dead_kinds = {k for k, p in self.policy.items() if p == "dead_letter"}
        self._lock = threading.Lock()
        self.summary = CheckSummary()
        self.rows_flagged = 0
        self.rows_dead_lettered = 0

    @property
    def checks(self) -> ProfileChecks | None:
        """The checks in use (None before the first batch when following a registry reference)."""
        return self.source.built

    def apply(self, chunk: Chunk, ctx: Context) -> list[Chunk]:
        # Taken outside isolate(): a profile that cannot be used stops the app, it is not bad data.
        checks = self.source.get(ctx.pins)

        def run(part: Chunk) -> Chunk:
            framed = part.as_frame()
            assert framed.frame is not None
            result = checks.check(framed.frame, column=self.column)
            return self._route(part, result.frame, result.summary, checks, ctx)

        return [out for out in isolate(chunk, run, ctx, self.name) if len(out)]

    def transform(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, list[int] | None]:
        raise NotImplementedError("Check works through apply(): it dead-letters rows with their reasons")

    def _route(
        self, part: Chunk, checked: pl.DataFrame, summary: CheckSummary, checks: ProfileChecks, ctx: Context
    ) -> Chunk:
        codes = checked.get_column(self.column)
        keep: list[int] | None = None
        dead: list[int] = []
        flagged = summary.rows_with_violations
        if self._dead_kinds and summary.rows_with_violations:
            # Only the rows with violations are looked at: a clean batch costs nothing here.
            violating = (codes.list.len() > 0).arg_true()
            prefixes = tuple(f"{kind}:" for kind in sorted(self._dead_kinds))
            dies = codes.gather(violating).list.eval(
                pl.any_horizontal(*(pl.element().str.starts_with(p) for p in prefixes))).list.any()
            dead = violating.filter(dies).to_list()
            flagged -= len(dead)
        for i in dead:
            row = checked.row(i, named=True)
            ctx.dead_letter(part.src[i], self.name, DataCheckError(
                f"record fails data checks against the training profile: {checks.explain(row, row[self.column])}"
                f" [{', '.join(row[self.column])}]"))
        with self._lock:
            self.summary.add(summary)
            self.rows_dead_lettered += len(dead)
            self.rows_flagged += flagged
        if dead:
            gone = set(dead)
            keep = [i for i in range(len(part)) if i not in gone]
        if not self.adds_column:
            return part if keep is None else part.select(keep)
        rows = self._exact_rows(part, ctx)
        if rows is not None:
            # Records that came as rows keep their exact values: a frame of a batch where one record
            # has text in a numeric field holds the whole column as text, which is no reason to change
            # the other records.
            lists = codes.to_list()
            positions = range(len(part)) if keep is None else keep
            return part.with_rows([{**rows[i], self.column: lists[i]} for i in positions], keep)
        framed = part.as_frame()
        return framed.with_frame(checked if keep is None else checked[keep], keep)

    @staticmethod
    def _exact_rows(part: Chunk, ctx: Context) -> list[Any] | None:
        """The records' own values when the chunk's frame may not hold them exactly, else None (use the frame).

        A chunk of dict rows is its own values. A frame decoded from the source's JSON holds
        them exactly only when :func:`~headwater.stream.serde.exact_frame` says so (one JSON
        type per field, no nulls, no missing field: the usual batch); otherwise the records
        are decoded again from their bytes, as they were before frames were decoded directly.
        """
        if part.rows is not None:
            return part.rows if all(isinstance(r, dict) for r in part.rows) else None
        if (isinstance(part.pristine, Json) and part.row_type is dict and part.frame is not None
                and not exact_frame(part.frame)):
            values = ctx.table.values
            rows, kept, _ = part.pristine.decode_rows([values[s] for s in part.src])
            if kept is None and all(isinstance(r, dict) for r in rows):
                return rows
        return None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "kind": "check",
                "model_version": self.source.version,
                "rows_checked": self.summary.rows,
                "rows_flagged": self.rows_flagged,
                "rows_dead_lettered": self.rows_dead_lettered,
                "violations": {k: dict(v) for k, v in self.summary.counts.items()},
            }


class DriftNode(Node):
    """Records on port 0 unchanged; alert records (rows of dicts, keyed by feature) on port 1."""

    kind = "monitor_drift"
    ports = 2

    def __init__(
        self, name: str, parent: tuple[Node, int], monitor: DriftMonitor | Fixed[DriftMonitor] | Follow[DriftMonitor]
    ) -> None:
        super().__init__(name, [parent])
        self.source = Fixed(monitor) if isinstance(monitor, DriftMonitor) else monitor

    @property
    def monitor(self) -> DriftMonitor | None:
        """The monitor in use (None before the first batch when following a registry reference)."""
        return self.source.built

    def run(self, inputs: list[list[Chunk]], ctx: Context) -> list[list[Chunk]]:
        monitor = self.source.get(ctx.pins) if inputs[0] else self.source.built
        passed: list[Chunk] = []
        alerts: list[Chunk] = []
        for chunk in inputs[0]:
            # Rows that cannot form a frame alone are dead-lettered by isolate(); the rest go on.
            for part, framed in isolate(chunk, lambda c: (c, c.as_frame()), ctx, self.name):
                assert framed.frame is not None and monitor is not None
                found = monitor.observe_rows(framed.frame)
                if found:
                    rows = [alert | {"step": self.name} for _, alert in found]
                    alerts.append(Chunk([framed.src[i] for i, _ in found], rows=rows,
                                        keys=[alert["feature"] for alert in rows]))
                # The part as it came, not its frame: a monitor changes nothing downstream (a frame of
                # a batch where one record has text in a numeric field would hold the column as text).
                passed.append(part)
        return [passed, alerts]

    def snapshot(self) -> dict[str, Any]:
        monitor = self.source.built
        counters = monitor.snapshot() if monitor is not None else {
            "window_size": 0, "evaluations": 0, "alerts": 0, "alerting": [], "last": {}}
        return {"kind": "drift", "model_version": self.source.version, **counters}


def quality_metrics(app: Any) -> dict[str, dict[str, Any]]:
    """The counters of every ``check`` and ``monitor_drift`` step of ``app`` (format in the module docstring)."""
    out: dict[str, dict[str, Any]] = {}
    for node in app.topology.nodes:
        step = getattr(node, "step", None)
        if isinstance(step, Check):
            out[step.name] = step.snapshot()
        elif isinstance(node, DriftNode):
            out[node.name] = node.snapshot()
    return out


def drift_monitor(
    profile: Any, options: Mapping[str, Any], *, registry: Any = None, reload_interval: float = 5.0,
) -> Fixed[DriftMonitor] | Follow[DriftMonitor]:
    """A DriftMonitor from a ready one, a profile document, a model version, or a registry reference (followed)."""
    if isinstance(profile, DriftMonitor):
        if options:
            raise DriftConfigError(f"monitor_drift(): options {sorted(options)} given with a ready DriftMonitor",
                                   hint="pass them to DriftMonitor(...) instead")
        return Fixed(profile)
    if isinstance(profile, str):
        _reload_interval(reload_interval)
        return Follow(profile, lambda mv: _monitor_of(mv, options), registry=registry,
                      reload_interval=reload_interval, clock=options.get("clock"))
    return Fixed(_monitor_of(profile, options))


def _monitor_of(source: Any, options: Mapping[str, Any]) -> DriftMonitor:
    if hasattr(source, "profile") and hasattr(source, "signature"):
        return DriftMonitor(source.profile, **{"signature": source.signature, **options})
    return DriftMonitor(source, **options)
