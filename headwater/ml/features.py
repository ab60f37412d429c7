"""Features defined once: the same object builds training columns and scores stream micro-batches.

A :class:`FeatureSet` declares the raw input columns (names and Polars dtypes) and a list of
features (:mod:`headwater.ml.transforms`). ``fit(frame)`` learns the fitted transforms'
state on the training split and returns a :class:`FittedFeatureSet`, a separate, frozen
object: the definition stays reusable (fit it again on another split) and a set that was
never fitted has no ``transform`` at all, so forgetting to fit is a type error rather than a
silent leak of scoring data into the state.

Parity: ``transform`` uses only row-wise expressions and constants frozen at fit time, and
casts every output to its schema dtype, so the result on a whole frame equals, bit for bit,
the concatenation of the results on any split of it into micro-batches (see
:func:`frames_identical` and the property test in ``tests/ml``).

The fitted state is data: :meth:`FittedFeatureSet.state` gives a JSON-serialisable dict and
:meth:`FeatureSet.load_state` rebuilds the same fitted set from it; the expressions stay
code in the user's module, versioned by :meth:`FeatureSet.source_hash`.
"""

from __future__ import annotations

import array
import hashlib
import inspect
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import polars as pl

from headwater.errors import UserError
from headwater.ml.transforms import FeatureDefinitionError, State, Transform

STATE_FORMAT = "headwater.features/1"


class FeatureInputError(UserError):
    """A frame does not match a feature set's input schema (missing column, wrong type)."""


class FeatureStateError(UserError):
    """A saved fitted state does not fit the feature set it is loaded into."""


def _dtype(value: Any) -> pl.DataType:
    if isinstance(value, pl.DataType):
        return value
    if isinstance(value, type) and issubclass(value, pl.DataType):
        return value()
    raise FeatureDefinitionError(
        f"input dtype {value!r} is not a Polars type", hint="use pl.Float64, pl.Int64, pl.String, pl.Datetime..."
    )


def _accepts(expected: pl.DataType, got: pl.DataType) -> bool:
    """Whether a column of type ``got`` is cast to ``expected`` without changing any value's meaning.

    Null (an all-null column of a small batch) fits anything; integers fit wider integers and
    floats (a JSON micro-batch whose floats happen to be whole infers Int64); Float32 fits Float64.
    """
    if got == expected or got == pl.Null:
        return True
    if expected.is_float() and (got.is_integer() or got.is_float()):
        return True
    if expected.is_integer() and got.is_integer():
        return _int_range(got)[0] >= _int_range(expected)[0] and _int_range(got)[1] <= _int_range(expected)[1]
    return isinstance(expected, pl.Datetime) and isinstance(got, pl.Datetime) and expected.time_zone == got.time_zone


def _int_range(dtype: pl.DataType) -> tuple[int, int]:
    bits = int("".join(c for c in str(dtype) if c.isdigit()))
    if str(dtype).startswith("U"):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


class FeatureSet:
    """A feature definition: named raw inputs with dtypes, and the features built from them.

    ``inputs`` maps each raw column to its Polars dtype; ``features`` are
    :class:`~headwater.ml.transforms.Feature` and fitted transforms, whose outputs come in the
    order given. ``derived`` names row-wise intermediate expressions over the inputs,
    computed once per frame and readable by features like inputs but not output (parse a
    date once for its year, month and age). ``required`` names inputs that must not be null
    (per-row validation flags such rows). The module that builds the set is remembered for
    :meth:`source_hash`.

    Every expression must be row-wise: ``check_row_wise`` evaluates each on a small probe
    frame, whole and row by row, and refuses one whose value depends on the other rows
    (``x - x.mean()``, ``rank()``, ``shift()``): after fitting, only frozen constants may
    describe the data.
    """

    def __init__(
        self,
        name: str,
        inputs: Mapping[str, Any],
        features: Sequence[Transform],
        *,
        derived: Mapping[str, pl.Expr] | None = None,
        required: Iterable[str] = (),
        source: Callable[..., Any] | None = None,
        check_row_wise: bool = True,
    ) -> None:
        self.name = name
        self.input_schema: dict[str, pl.DataType] = {col: _dtype(t) for col, t in inputs.items()}
        self.derived = {col: expr.alias(col) for col, expr in (derived or {}).items()}
        self.features = list(features)
        self.required = list(required)
        self._source = source
        caller = sys._getframe(1)
        self._module = caller.f_globals.get("__name__")
        self._file = caller.f_globals.get("__file__")
        # A set built inside a module-level function (``def house_features(): return FeatureSet(...)``)
        # is found again by calling that function: remembered for definition_ref().
        self._builder = caller.f_code.co_qualname if caller.f_code.co_name != "<module>" else None
        for col, expr in self.derived.items():
            unknown = [c for c in expr.meta.root_names() if c not in self.input_schema]
            if col in self.input_schema or unknown:
                raise FeatureDefinitionError(
                    f"derived column {col!r} of {name!r} "
                    + (f"reads {unknown}, which are not declared inputs" if unknown else "shadows an input"),
                    hint="derived columns are computed from inputs only, under new names",
                )
        empty = pl.DataFrame(schema=self.input_schema).lazy()
        self.frame_schema: dict[str, pl.DataType] = dict(
            empty.with_columns(list(self.derived.values())).collect_schema()
        )
        seen: set[str] = set()
        for feature in self.features:
            if not isinstance(feature, Transform):
                raise FeatureDefinitionError(
                    f"feature set {name!r}: {feature!r} is not a feature",
                    hint='wrap expressions as Feature("name", expr)',
                )
            if feature.name in seen:
                raise FeatureDefinitionError(f"feature set {name!r} has two features named {feature.name!r}")
            seen.add(feature.name)
            if not feature.root_names():
                raise FeatureDefinitionError(
                    f"feature {feature.name!r} of {name!r} reads no column",
                    hint="a constant is no feature: add it to the model's input after transform()",
                )
            unknown = [c for c in feature.root_names() if c not in self.frame_schema]
            if unknown:
                raise FeatureDefinitionError(
                    f"feature {feature.name!r} of {name!r} reads {unknown}, which are not declared inputs",
                    hint=f"declare them in inputs= or derived= (declared: {sorted(self.frame_schema)})",
                )
        for col in self.required:
            if col not in self.input_schema:
                raise FeatureDefinitionError(f"required column {col!r} of {name!r} is not a declared input")
        if check_row_wise:
            self._check_row_wise()

    def _check_row_wise(self) -> None:
        """Refuse an expression whose value for a row depends on other rows (see the class docstring)."""
        probe = pl.DataFrame([_probe_series(col, dtype) for col, dtype in self.input_schema.items()])
        named: list[tuple[str, pl.Expr]] = [(f"derived column {c!r}", e) for c, e in self.derived.items()]
        try:
            frame = probe.with_columns(list(self.derived.values()))
        except pl.exceptions.PolarsError:
            return  # the probe values do not suit the expressions: nothing to conclude
        for feature in self.features:
            expr = getattr(feature, "expr", None) if not feature.fitted else getattr(feature, "input", None)
            if isinstance(expr, pl.Expr):
                named.append((f"feature {feature.name!r}", expr.alias("out")))
        for what, expr in named:
            try:
                whole = frame.select(expr.alias("out"))
                rows = pl.concat([_materialise(frame.slice(i, 1)).select(expr.alias("out")).head(1) for i in range(3)])
            except pl.exceptions.PolarsError:
                continue
            if whole.height != frame.height or not frames_identical(whole.head(3), rows):
                raise FeatureDefinitionError(
                    f"{what} of {self.name!r} is not row-wise: its value for a row depends on the other "
                    f"rows of the batch ({expr.meta.undo_aliases()}), so batch and stream results would differ",
                    hint="use a fitted transform (StandardScale, Impute...) for statistics of the data",
                )

    # -- versioning ---------------------------------------------------------------

    def source_hash(self) -> str:
        """``sha256:<hex>`` of the code that defines the features.

        The source of ``source=`` (a definition function) when given, else of the module that
        built the set; for code without a source file (a REPL), of the expressions' text.
        """
        text: str | None = None
        target: Any = self._source or sys.modules.get(self._module or "")
        if target is not None:
            try:
                text = inspect.getsource(target)
            except (OSError, TypeError):
                text = None
        if text is None:
            text = repr([(f.kind, f.name, str(getattr(f, "expr", getattr(f, "input", "")))) for f in self.features])
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()

    def definition_ref(self) -> dict[str, str] | None:
        """Where a scoring process finds this definition again: ``{"module", "attr", "file"}``, or None.

        ``attr`` is the function that builds the set (``source=``, or the function that called
        ``FeatureSet(...)``) or a module-level name bound to the set. The registry keeps it in the
        lineage so ``headwater serve`` and batch scoring rebuild the features without being told
        (see :func:`headwater.ml.scoring.find_definition`). ``file`` lets a process whose
        ``sys.path`` lacks the module load it from its path. None for a set made in a REPL.
        """
        module, attr, file = self._module, None, self._file
        source = self._source
        if source is not None and "<locals>" not in getattr(source, "__qualname__", "<locals>"):
            module, attr = source.__module__, source.__qualname__
            file = getattr(sys.modules.get(module), "__file__", None)
        elif self._builder is not None and "<" not in self._builder:
            attr = self._builder
        else:
            namespace = vars(sys.modules[module]) if module in sys.modules else {}
            attr = next((name for name, value in namespace.items() if value is self), None)
        if module is None or attr is None or (module == "__main__" and file is None):
            return None
        return {"module": module, "attr": attr, "file": str(file or "")}

    # -- validation ---------------------------------------------------------------

    def conform(self, frame: pl.DataFrame, *, coerce: bool = False) -> pl.DataFrame:
        """The input columns of ``frame`` cast to the input schema; :class:`FeatureInputError` if they do not fit.

        Compatible types (see ``_accepts``) are cast. With ``coerce=True`` text columns are
        also parsed into the declared type (strictly: a value that does not parse raises) and
        floats or wider integers narrowed into a declared integer type (a fraction is
        truncated); use it after :meth:`validate_rows` has removed the rows that do not fit.
        """
        columns = []
        # frame.schema builds a new Schema on every access (~20 us for 14 columns): read it once.
        schema = frame.schema
        if all(schema.get(col) == expected for col, expected in self.input_schema.items()):
            # Already the declared types (as REST serving builds its frames): the casts below would
            # be no-ops, and their select a query run (~0.2 ms however few the rows).
            return pl.DataFrame([frame.get_column(col) for col in self.input_schema])
        for col, expected in self.input_schema.items():
            if col not in schema:
                raise FeatureInputError(
                    f"feature set {self.name!r} needs column {col!r} ({expected}); the frame has {frame.columns}",
                    hint="add the column, or drop the features that read it",
                )
            got = schema[col]
            if _accepts(expected, got):
                columns.append(pl.col(col).cast(expected))
            elif coerce and _coercible(expected, got):
                columns.append(_parse(pl.col(col), expected, strict=True))
            else:
                raise FeatureInputError(
                    f"feature set {self.name!r}: column {col!r} should be {expected}, got {got}",
                    hint="cast it before scoring, or check rows with validate_rows()",
                )
        try:
            return frame.select(columns)
        except pl.exceptions.PolarsError as exc:
            raise FeatureInputError(f"feature set {self.name!r}: input does not parse: {exc}") from exc

    def validate_rows(self, frame: pl.DataFrame) -> pl.Series:
        """Per row, why it cannot be scored (String), or null when it can. Never raises; vectorised.

        A row is bad when a declared column is missing from the frame, when its value does not
        fit the declared type (text that is no number, a float where an integer is expected),
        or when a ``required`` column is null. Reasons name the column and what was expected.
        """
        checks: list[pl.Expr] = []
        schema = frame.schema  # once: each access builds a Schema
        for col, expected in self.input_schema.items():
            if col not in schema:
                # Tied to a per-row expression: a bare literal would give one row, not one per row.
                checks.append(pl.when(pl.int_range(pl.len()) >= 0).then(pl.lit(f"missing column {col!r} ({expected})")))
                continue
            got = schema[col]
            if not _accepts(expected, got):
                checks.append(_row_type_check(col, expected, got))
            if col in self.required:
                checks.append(pl.when(pl.col(col).is_null()).then(pl.lit(f"column {col!r} is required, got null")))
        if not checks:
            return pl.Series("reason", [None] * frame.height, dtype=pl.String)
        reasons = pl.concat_str(checks, separator="; ", ignore_nulls=True)
        out = frame.select(pl.when(reasons != "").then(reasons).alias("reason")).to_series()
        return out.cast(pl.String)

    # -- fitting --------------------------------------------------------------------

    def fit(self, frame: pl.DataFrame) -> FittedFeatureSet:
        """Learn every fitted transform's state on ``frame`` (the training split only) and freeze it."""
        prepared = self.conform(frame).with_columns(list(self.derived.values()))
        return FittedFeatureSet(self, [f.fit(prepared) if f.fitted else {} for f in self.features])

    def load_state(self, state: Mapping[str, Any], *, check_source: bool = False) -> FittedFeatureSet:
        """The fitted set saved by :meth:`FittedFeatureSet.state`, rebuilt on this definition.

        Raises :class:`FeatureStateError` when the state was made by another feature set (name,
        features or input schema differ). ``check_source=True`` also refuses a state made by
        different source code (another :meth:`source_hash`).
        """
        if state.get("format") != STATE_FORMAT:
            raise FeatureStateError(f"feature state has format {state.get('format')!r}; expected {STATE_FORMAT!r}")
        if state.get("name") != self.name:
            raise FeatureStateError(f"feature state is for {state.get('name')!r}, not {self.name!r}")
        if check_source and state.get("source_hash") != self.source_hash():
            raise FeatureStateError(
                f"feature state of {self.name!r} was fitted with source {state.get('source_hash')}, "
                f"the code now hashes to {self.source_hash()}",
                hint="refit the features, or load with check_source=False if the change does not matter",
            )
        inputs = [[c, str(t)] for c, t in self.input_schema.items()]
        if state.get("input_schema") != inputs:
            raise FeatureStateError(
                f"feature state of {self.name!r} expects inputs {state.get('input_schema')}, "
                f"the definition has {inputs}"
            )
        saved = state.get("features", [])
        ours = [(f.name, f.kind) for f in self.features]
        if [(s.get("name"), s.get("kind")) for s in saved] != ours:
            raise FeatureStateError(
                f"feature state of {self.name!r} has features "
                f"{[(s.get('name'), s.get('kind')) for s in saved]}; the definition has {ours}"
            )
        fitted = FittedFeatureSet(self, [dict(s.get("state", {})) for s in saved])
        schema = [[c, str(t)] for c, t in fitted.output_schema.items()]
        if state.get("output_schema") != schema:
            raise FeatureStateError(
                f"feature state of {self.name!r} gives outputs {state.get('output_schema')}, now {schema}"
            )
        return fitted

    @staticmethod
    def from_state(
        definition: FeatureSet | Callable[[], FeatureSet], state: Mapping[str, Any], *, check_source: bool = False
    ) -> FittedFeatureSet:
        """Rebuild a fitted set from a definition (a ``FeatureSet`` or a function returning one) and its state."""
        feature_set = definition if isinstance(definition, FeatureSet) else definition()
        return feature_set.load_state(state, check_source=check_source)

    def __repr__(self) -> str:
        return f"FeatureSet({self.name!r}, {len(self.input_schema)} inputs, {len(self.features)} features)"


def _coercible(expected: pl.DataType, got: pl.DataType) -> bool:
    """Types whose values :meth:`FeatureSet.conform` parses or narrows with ``coerce=True``, row by row."""
    return got == pl.String or (expected.is_integer() and got.is_numeric())


def _row_type_check(col: str, expected: pl.DataType, got: pl.DataType) -> pl.Expr:
    """Per row, the reason a value of type ``got`` does not fit ``expected`` (null when it does)."""
    value = pl.col(col)
    if not _coercible(expected, got):
        return pl.when(pl.int_range(pl.len()) >= 0).then(pl.lit(f"column {col!r}: expected {expected}, got {got}"))
    parsed = _parse(value, expected, strict=False)
    bad = value.is_not_null() & parsed.is_null()
    if got != pl.String:  # a float or a wider integer: it fits only if it comes back unchanged
        bad = bad | (value.is_not_null() & (parsed.cast(got, strict=False) != value).fill_null(True))
    return pl.when(bad).then(pl.format(f"column {col!r}: expected {expected}, got {{}}", value.cast(pl.String)))


def _parse(expr: pl.Expr, dtype: pl.DataType, *, strict: bool) -> pl.Expr:
    """Text (or another type) into ``dtype``; integers from text must be whole numbers."""
    return expr.cast(dtype, strict=strict)


class FittedFeatureSet:
    """A feature set with its fitted state frozen: transforms frames of any size identically."""

    def __init__(self, definition: FeatureSet, states: list[State]) -> None:
        self.definition = definition
        self.states = states
        schema: dict[str, pl.DataType] = {}
        exprs: list[pl.Expr] = []
        for feature, state in zip(definition.features, states, strict=True):
            dtypes = feature.output_dtypes(state, definition.frame_schema)
            for out in dtypes:
                if out in schema:
                    raise FeatureDefinitionError(
                        f"feature set {definition.name!r} gives two output columns named {out!r}",
                        hint="rename one feature (name=...)",
                    )
            schema.update(dtypes)
            made = feature.exprs(state, definition.frame_schema)
            exprs.extend(e.cast(dtypes[e.meta.output_name()], strict=False) for e in made)
        self.output_schema = schema
        self._exprs = exprs
        self._derived = list(definition.derived.values())

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def input_schema(self) -> dict[str, pl.DataType]:
        return dict(self.definition.input_schema)

    def transform(self, frame: pl.DataFrame, *, coerce: bool = False) -> pl.DataFrame:
        """The feature columns of ``frame``, exactly :attr:`output_schema` (names, order, dtypes).

        Raises :class:`FeatureInputError` when an input column is missing or of a wrong type.
        """
        conformed = self.definition.conform(frame, coerce=coerce)
        # Polars divides a column by a constant with a reciprocal-multiply kernel, but a one-row
        # column (or one held as a single repeated value, as slicing and concatenating rows can
        # give) element by element: the last bit can differ (measured: ~1 row in 2 for
        # (x - 0.2) / 7.3). So every column is made an ordinary Series, and a one-row frame is
        # scored as two copies of its row, to keep every row on the kernels a large frame uses.
        # Eager on purpose: the lazy engine picked either kernel depending on the batch's
        # length and null positions (the parity test caught it).
        prepared = _materialise(conformed)
        if self._derived:
            prepared = prepared.with_columns(self._derived)
        return prepared.select(self._exprs).head(frame.height)

    def validate_rows(self, frame: pl.DataFrame) -> pl.Series:
        """See :meth:`FeatureSet.validate_rows`."""
        return self.definition.validate_rows(frame)

    def state(self) -> dict[str, Any]:
        """The fitted state as JSON-serialisable data (numbers, strings, lists; no code).

        Non-finite floats are written as the strings ``"nan"``, ``"inf"``, ``"-inf"`` so the
        state is strict JSON.
        """
        d = self.definition
        return {
            "format": STATE_FORMAT,
            "name": d.name,
            "source_hash": d.source_hash(),
            "polars_version": pl.__version__,
            "input_schema": [[c, str(t)] for c, t in d.input_schema.items()],
            "output_schema": [[c, str(t)] for c, t in self.output_schema.items()],
            "features": [
                {"name": f.name, "kind": f.kind, "state": _json_safe(s)}
                for f, s in zip(d.features, self.states, strict=True)
            ],
        }

    def __repr__(self) -> str:
        return f"FittedFeatureSet({self.name!r}, {len(self.output_schema)} outputs)"


_PROBE_NUMBERS = [3, 1, 3, 7, 0, 100]  # repeats, so group-wise windows show too


def _probe_series(name: str, dtype: pl.DataType) -> pl.Series:
    """Six varied values of ``dtype`` for the row-wise check."""
    if dtype.is_float():
        return pl.Series(name, [0.5, -2.25, 3.0, 1e3, 0.1, 7.3], dtype=dtype)
    if dtype == pl.String:
        return pl.Series(name, ["a", "20140625T000000", "a", "2015-02-03", "", "a"], dtype=dtype)
    if dtype == pl.Boolean:
        return pl.Series(name, [True, False, True, True, False, False])
    return pl.Series(name, _PROBE_NUMBERS).cast(dtype, strict=False)


def _materialise(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with each column an ordinary, contiguous Series of at least two rows."""
    columns = frame.get_columns()
    if frame.height == 1:
        columns = [s.append(s) for s in columns]  # two chunks of one row: rechunked below
    if any(s.n_chunks() > 1 for s in columns):
        columns = [s.rechunk() for s in columns]
    return pl.DataFrame(columns)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def frames_identical(left: pl.DataFrame, right: pl.DataFrame) -> bool:
    """Same column names, dtypes, nulls and values, bit for bit (NaN equals NaN; 0.0 differs from -0.0)."""
    if left.schema != right.schema or left.height != right.height:
        return False
    for name, dtype in left.schema.items():
        a, b = left[name], right[name]
        if not a.is_null().equals(b.is_null()):
            return False
        if dtype.is_float():
            code = "d" if dtype == pl.Float64 else "f"
            bits_a = array.array(code, a.fill_null(0.0).to_list()).tobytes()
            bits_b = array.array(code, b.fill_null(0.0).to_list()).tobytes()
            if bits_a != bits_b:
                return False
        elif not a.equals(b, check_names=True, null_equal=True):
            return False
    return True
