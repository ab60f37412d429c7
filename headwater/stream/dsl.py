"""The stream DSL: streams, operators and the topology they declare.

Operators only declare: each returns a new :class:`Stream` (a node of the app's
:class:`Topology`), nothing is read or written until the app runs. The kernel then runs
the whole topology once per micro-batch, node after node in the order they were declared
(a stream is always declared after the streams it reads from).

Where later steps fit
---------------------
Every step that works on a whole frame is a :class:`~headwater.stream.steps.BatchStep`:
its ``transform(frame)`` returns the new frame and, if rows were dropped or repeated, the
input row of each output row (keys, timestamps and headers follow by that). The planned
``Stream.join_table(table, on=...)`` (enrichment from a reference table: a left join of the
frame on ``on`` against the table's current snapshot, kept in the table object between
batches) and ``Stream.predict(model)`` (one model call on the batch's feature columns,
adding prediction columns) will be ``BatchStep`` subclasses added with
:meth:`Stream.then`, so they get the same bisection of failing rows, dead letters and
metadata tracking as ``map_batch``, and no change to the kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import polars as pl

from headwater.errors import UserError
from headwater.stream._common import validate_topic_name
from headwater.stream.chunk import Chunk, Context
from headwater.stream.serde import Bytes, Json, Serde, Str
from headwater.stream.steps import (
    BatchStep,
    Branch,
    Filter,
    FilterExpr,
    FlatMap,
    KeyBy,
    KeyByExpr,
    Map,
    MapBatch,
    Peek,
    Step,
    decode_source,
    encode_chunk,
    merge_chunks,
)


class StreamDefinitionError(UserError):
    """A stream app is declared wrongly (bad operator argument, streams of two apps mixed)."""


# -- nodes -------------------------------------------------------------------------


class Node:
    """A vertex of the topology: reads the chunks of its parents' ports, gives chunks on its own ports."""

    kind = "node"
    ports = 1

    def __init__(self, name: str, parents: list[tuple[Node, int]]) -> None:
        self.name = name
        self.parents = parents

    def run(self, inputs: list[list[Chunk]], ctx: Context) -> list[list[Chunk]]:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class SourceNode(Node):
    kind = "source"

    def __init__(self, name: str, topic: str, value: Serde, key: Serde | None) -> None:
        super().__init__(name, [])
        self.topic, self.value, self.key = topic, value, key
        self.prefer_frame = False  # set by Topology.prepare from the first steps

    def run(self, inputs: list[list[Chunk]], ctx: Context) -> list[list[Chunk]]:
        return [decode_source(ctx, self.topic, self.value, self.key, prefer_frame=self.prefer_frame, step=self.name)]

    def describe(self) -> str:
        return f"{self.name} ({self.value!r})"


class StepNode(Node):
    def __init__(self, step: Step, parent: tuple[Node, int]) -> None:
        super().__init__(step.name, [parent])
        self.step = step
        self.kind = step.kind

    def run(self, inputs: list[list[Chunk]], ctx: Context) -> list[list[Chunk]]:
        apply = self.step.apply
        return [[out for chunk in inputs[0] for out in apply(chunk, ctx) if len(out)]]


class BranchNode(Node):
    kind = "branch"

    def __init__(self, branch: Branch, parent: tuple[Node, int]) -> None:
        super().__init__(branch.name, [parent])
        self.branch = branch
        self.ports = branch.ports

    def run(self, inputs: list[list[Chunk]], ctx: Context) -> list[list[Chunk]]:
        out: list[list[Chunk]] = [[] for _ in range(self.ports)]
        for chunk in inputs[0]:
            for port, chunks in enumerate(self.branch.apply(chunk, ctx)):
                out[port].extend(chunks)
        return out


class MergeNode(Node):
    kind = "merge"

    def run(self, inputs: list[list[Chunk]], ctx: Context) -> list[list[Chunk]]:
        return [merge_chunks([chunk for chunks in inputs for chunk in chunks])]


class SinkNode(Node):
    kind = "to"
    ports = 0

    def __init__(self, name: str, parent: tuple[Node, int], topic: str, value: Serde, key: Serde) -> None:
        super().__init__(name, [parent])
        self.topic, self.value, self.key = topic, value, key

    def run(self, inputs: list[list[Chunk]], ctx: Context) -> list[list[Chunk]]:
        for chunk in inputs[0]:
            encode_chunk(chunk, ctx, self.name, self.topic, self.value, self.key)
        return []

    def describe(self) -> str:
        return f"{self.name} ({self.value!r})"


class Topology:
    """The nodes of one app, in declaration order (parents before children)."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self._names: set[str] = set()

    def add(self, node: Node) -> Node:
        node.name = self._unique(node.name)
        self.nodes.append(node)
        return node

    def _unique(self, name: str) -> str:
        candidate, n = name, 1
        while candidate in self._names:
            n += 1
            candidate = f"{name}#{n}"
        self._names.add(candidate)
        return candidate

    @property
    def sources(self) -> list[SourceNode]:
        return [n for n in self.nodes if isinstance(n, SourceNode)]

    @property
    def sinks(self) -> list[SinkNode]:
        return [n for n in self.nodes if isinstance(n, SinkNode)]

    def source_topics(self) -> list[str]:
        return sorted({n.topic for n in self.sources})

    def sink_topics(self) -> list[str]:
        return sorted({n.topic for n in self.sinks})

    def prepare(self) -> None:
        """Decide per source whether to decode into a frame: yes when a batch step reads it first."""
        for node in self.sources:
            node.prefer_frame = any(
                (isinstance(child, StepNode) and isinstance(child.step, BatchStep))
                or (isinstance(child, BranchNode) and any(isinstance(p, pl.Expr) for p in child.branch.predicates))
                for child in self.nodes
                if any(parent is node for parent, _ in child.parents)
            )
            if isinstance(node.value, Json):
                # Steps that pass the decoded values on (check) need to know whether a frame holds them exactly.
                node.value.mark_exact = node.value.mark_exact or any(
                    getattr(getattr(child, "step", None), "passes_values", False)
                    for child in self.nodes if any(parent is node for parent, _ in child.parents))

    def run(self, ctx: Context) -> None:
        """Run every node once on the micro-batch in ``ctx`` (outputs and dead letters land in ``ctx``)."""
        results: dict[int, list[list[Chunk]]] = {}
        for node in self.nodes:
            inputs = [results[id(parent)][port] for parent, port in node.parents]
            results[id(node)] = node.run(inputs, ctx)

    def describe(self) -> str:
        """One line per node: ``name <- parents``."""
        lines = []
        for node in self.nodes:
            parents = ", ".join(p.name if p.ports == 1 else f"{p.name}[{port}]" for p, port in node.parents)
            lines.append(f"{node.describe()}" + (f" <- {parents}" if parents else ""))
        return "\n".join(lines)


# -- the builder users see ---------------------------------------------------------


def _fn_name(fn: Any) -> str:
    if isinstance(fn, pl.Expr):
        text = str(fn)
        return text if len(text) <= 60 else text[:57] + "..."
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__


def _callable(kind: str, fn: Any) -> None:
    if not callable(fn):
        raise StreamDefinitionError(f"{kind}() takes a function, got {fn!r}")


def _predicate(kind: str, predicate: Any) -> None:
    if not (callable(predicate) or isinstance(predicate, pl.Expr)):
        raise StreamDefinitionError(
            f"{kind}() takes a function of the value or a polars expression, got {predicate!r}",
            hint="e.g. lambda house: house['price'] > 0, or pl.col('price') > 0 (vectorised)",
        )


class Stream:
    """Records flowing through a stream app; every operator returns a new stream.

    Record functions (``map``, ``flat_map``, ``peek``, and ``filter``/``branch``/``key_by``
    given a function) take the decoded value: a dict for ``Json()``, a Struct for
    ``Schema(MyStruct)``, bytes for ``Bytes()``. ``map_batch`` functions, and
    ``filter``/``branch``/``key_by`` given a Polars expression, work on the whole
    micro-batch as a ``polars.DataFrame`` (the fast path). Keys, timestamps and headers
    follow every row; a row keeps its input key unless ``key_by`` sets another.
    """

    def __init__(self, topology: Topology, node: Node, port: int = 0) -> None:
        self._topology = topology
        self._node = node
        self._port = port

    def __repr__(self) -> str:
        return f"Stream({self._node.name!r})"

    @property
    def name(self) -> str:
        return self._node.name

    def then(self, step: Step) -> Stream:
        """Add a step built elsewhere (the extension point for ``join_table``, ``predict`` and others)."""
        node = self._topology.add(StepNode(step, (self._node, self._port)))
        step.name = node.name
        return Stream(self._topology, node)

    def map(self, fn: Callable[[Any], Any], *, name: str | None = None) -> Stream:
        """A new value for every record: ``fn(value) -> value``."""
        _callable("map", fn)
        return self.then(Map(name or f"map:{_fn_name(fn)}", fn))

    def flat_map(self, fn: Callable[[Any], Iterable[Any]], *, name: str | None = None) -> Stream:
        """Zero or more values for every record: ``fn(value) -> iterable of values`` (each keeps the record's key)."""
        _callable("flat_map", fn)
        return self.then(FlatMap(name or f"flat_map:{_fn_name(fn)}", fn))

    def filter(self, predicate: Callable[[Any], Any] | pl.Expr, *, name: str | None = None) -> Stream:
        """Keep the records for which ``predicate(value)`` is true, or the rows where the expression is."""
        _predicate("filter", predicate)
        label = name or f"filter:{_fn_name(predicate)}"
        if isinstance(predicate, pl.Expr):
            return self.then(FilterExpr(label, predicate))
        return self.then(Filter(label, predicate))

    def map_batch(self, fn: Callable[[pl.DataFrame], pl.DataFrame], *, name: str | None = None) -> Stream:
        """``fn(frame) -> frame`` on the whole micro-batch, one output row per input row, in order."""
        _callable("map_batch", fn)
        return self.then(MapBatch(name or f"map_batch:{_fn_name(fn)}", fn))

    def predict(
        self,
        model_ref: str,
        *,
        output: str = "prediction",
        registry: Any = None,
        features: Any = None,
        reload_interval: float = 5.0,
        version_column: str = "model_version",
        clock: Any = None,
        allow_pickle: bool = False,
        name: str | None = None,
    ) -> Stream:
        """Score every record with the model ``model_ref`` (``"house_prices@champion"``, ``"house_prices:3"``).

        Adds ``output`` (the prediction) and ``version_column`` (``"house_prices:3"``) to every
        record; records that do not match the model's input signature go to the dead letters
        with the reason. ``features`` is the ``FeatureSet`` (or the function returning it) the
        model was trained with; its fitted state comes from the model. The reference is
        resolved again at most every ``reload_interval`` seconds, between batches: when the
        alias moved, the next batch is scored by the new version. ``registry`` defaults to the
        headwater home's (opened on the first batch). See :mod:`headwater.stream.predict`.
        """
        from headwater.stream.predict import Predict

        return self.then(Predict(
            name or f"predict:{model_ref}", model_ref, registry=registry, features=features, output=output,
            version_column=version_column, reload_interval=reload_interval, clock=clock, allow_pickle=allow_pickle,
        ))

    def check(
        self,
        profile_or_checks: Any,
        *,
        policy: str | Mapping[str, str] = "flag",
        column: str = "data_checks",
        registry: Any = None,
        reload_interval: float = 5.0,
        clock: Any = None,
        name: str | None = None,
        **options: Any,
    ) -> Stream:
        """Check every record against a training profile: a model reference, a profile, a model version or checks.

        ``profile_or_checks``: ``"house_prices@champion"`` (the profile and signature of the
        version it points to, resolved through ``registry`` on the first batch and followed
        every ``reload_interval`` seconds, timed by ``clock``), a profile document
        (``ModelVersion.profile``), a ``ModelVersion``, or ready
        :class:`~headwater.quality.checks.ProfileChecks`. Violations are ``"kind:column"``
        codes, kinds ``missing``, ``type``, ``null``, ``range`` and ``unseen``. ``policy``
        (one for all kinds, or kind -> policy, unnamed kinds flagged): ``"flag"`` lets the
        record go on with its codes in ``column`` (a list, empty when clean),
        ``"dead_letter"`` sends it to the dead letters with the reason. ``options`` go to
        :class:`~headwater.quality.checks.ProfileChecks` (``signature``, ``columns``,
        ``categorical``, ``vocabulary``, ``tolerance``, ``skip``). See :mod:`headwater.quality.stream`.
        """
        from headwater.quality.stream import Check, as_checks

        checks = as_checks(profile_or_checks, options, registry=registry, reload_interval=reload_interval, clock=clock)
        return self.then(Check(name or "check", checks, policy=policy, column=column))

    def monitor_drift(
        self,
        profile: Any,
        *,
        alerts_topic: str,
        window: int = 1000,
        every: int | None = 100,
        thresholds: Mapping[str, Any] | None = None,
        registry: Any = None,
        reload_interval: float = 5.0,
        name: str | None = None,
        **options: Any,
    ) -> Stream:
        """Pass records on unchanged; write drift alerts against the training ``profile`` to ``alerts_topic``.

        ``profile``: as for :meth:`check` (a model reference is followed; a new version
        starts a new window), or a ready :class:`~headwater.quality.drift.DriftMonitor`.
        Over the last ``window`` records, evaluated every ``every`` records: PSI per feature
        (default threshold 0.2) and, when given thresholds, mean/median shifts. ``options``
        go to :class:`~headwater.quality.drift.DriftMonitor` (``features``, ``signature``,
        ``categorical``, ``window_seconds``, ``every_seconds``, ``min_records``,
        ``cooldown_seconds``, ``clock``, ``version_column``). Alerts are JSON records keyed
        by feature. See :mod:`headwater.quality.drift` and :mod:`headwater.quality.stream`.
        """
        from headwater.quality.drift import DriftMonitor
        from headwater.quality.stream import DriftNode, drift_monitor

        validate_topic_name(alerts_topic)
        given = {"window": window, "every": every, "thresholds": thresholds, **options}
        if isinstance(profile, DriftMonitor):  # a ready monitor carries its own settings
            given = options
        monitor = drift_monitor(profile, given, registry=registry, reload_interval=reload_interval)
        node = self._topology.add(DriftNode(name or "monitor_drift", (self._node, self._port), monitor))
        Stream(self._topology, node, 1).to(alerts_topic, value=Json(), key=Str())
        return Stream(self._topology, node, 0)

    def enrich(
        self,
        table: Any,
        *,
        on: str | list[str] | tuple[str, ...] | None = None,
        columns: list[str] | tuple[str, ...] | None = None,
        prefix: str = "",
        missing: str = "null",
        flag: str | None = None,
        cast: bool = False,
        name: str | None = None,
    ) -> Stream:
        """Add the columns of a reference table to every record: a vectorised left join on ``on``.

        ``table`` is a :class:`~headwater.stream.tables.ReferenceTable`; ``on`` names the
        record field(s) matching its key (default: the key's names). Every record comes out
        once, in order, with ``columns`` (default: all non-key columns) named
        ``prefix + column``. A record whose key is unknown is kept with nulls
        (``missing="null"``), also flagged in a boolean column ``flag`` (``"flag"``, default
        ``<table>_missing``), or dead-lettered with the reason (``"dead_letter"``). A key field
        of another type than the table's key stops the app with a clear error, unless
        ``cast=True``. While the app runs, the table follows its changelog topic; each
        micro-batch is joined with one version of it. See :mod:`headwater.stream.tables`.
        """
        from headwater.stream.tables.enrich import Enrich

        return self.then(Enrich(
            name or f"enrich:{getattr(table, 'name', table)}", table, on=on, columns=columns, prefix=prefix,
            missing=missing, flag=flag, cast=cast,
        ))

    def peek(self, fn: Callable[[Any], Any], *, name: str | None = None) -> Stream:
        """Call ``fn(value)`` for its side effect; the records go on unchanged."""
        _callable("peek", fn)
        return self.then(Peek(name or f"peek:{_fn_name(fn)}", fn))

    def key_by(self, key: Callable[[Any], Any] | pl.Expr | str, *, name: str | None = None) -> Stream:
        """Give records a new key: ``key(value)``, an expression, or a column's value.

        New keys are encoded by the key serde of ``to`` (default ``Str()``).
        """
        if isinstance(key, str):
            key = pl.col(key)
        _predicate("key_by", key)
        label = name or f"key_by:{_fn_name(key)}"
        if isinstance(key, pl.Expr):
            return self.then(KeyByExpr(label, key))
        return self.then(KeyBy(label, key))

    def branch(
        self, *predicates: Callable[[Any], Any] | pl.Expr, default: bool = True, name: str | None = None
    ) -> list[Stream]:
        """Route each record to the first predicate it satisfies; one stream per predicate, then the default.

        With ``default=False`` records matching no predicate are dropped and no default stream is returned.
        """
        if not predicates:
            raise StreamDefinitionError("branch() needs at least one predicate")
        for p in predicates:
            _predicate("branch", p)
        node = self._topology.add(BranchNode(Branch(name or "branch", predicates, default), (self._node, self._port)))
        assert isinstance(node, BranchNode)
        node.branch.name = node.name
        return [Stream(self._topology, node, port) for port in range(node.ports)]

    def merge(self, *others: Stream, name: str | None = None) -> Stream:
        """One stream of this stream's records and the others' (per-partition order kept)."""
        if not others:
            raise StreamDefinitionError("merge() needs at least one other stream")
        for other in others:
            if not isinstance(other, Stream) or other._topology is not self._topology:
                raise StreamDefinitionError(f"merge() takes streams of the same app, got {other!r}")
        parents = [(s._node, s._port) for s in (self, *others)]
        node = self._topology.add(MergeNode(name or "merge", parents))
        return Stream(self._topology, node)

    def to(self, topic: str, *, value: Serde | None = None, key: Serde | None = None) -> None:
        """Write the records to ``topic``, keys and headers as they are, timestamps of the input records.

        ``value`` defaults to the source's serde when that is ``Bytes()`` or ``Str()``, else
        ``Json()``; ``key`` (default ``Str()``) encodes keys set by ``key_by``.
        """
        validate_topic_name(topic)
        for label, serde in (("value", value), ("key", key)):
            if serde is not None and not isinstance(serde, Serde):
                raise StreamDefinitionError(f"to({topic!r}, {label}=...) takes a serde such as Json(), got {serde!r}")
        value = value or self._default_serde()
        self._topology.add(SinkNode(f"to:{topic}", (self._node, self._port), topic, value, key or Str()))

    def _default_serde(self) -> Serde:
        seen: set[Serde] = set()
        stack = [self._node]
        while stack:
            node = stack.pop()
            if isinstance(node, SourceNode):
                seen.add(node.value)
            stack.extend(parent for parent, _ in node.parents)
        if len(seen) == 1:
            (only,) = seen
            if isinstance(only, Bytes | Str):
                return only
        return Json()
