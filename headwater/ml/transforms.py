"""The building blocks of a :class:`~headwater.ml.features.FeatureSet`.

Two kinds of feature, both Polars expressions in the end:

* :class:`Feature`: a stateless, row-wise expression (``pl.col("a") / pl.col("b")``),
  plus small helpers for the common ones (:func:`ratio`, :func:`log1p`, :func:`clip`,
  :func:`parse_datetime`, :func:`date_part`, :func:`regex_extract`, :func:`map_values`,
  :func:`fill`).
* fitted transforms (:class:`Impute`, :class:`StandardScale`, :class:`RobustScale`,
  :class:`OneHot`, :class:`Ordinal`, :class:`FrequencyEncode`, :class:`QuantileBucket`):
  ``fit(series) -> state`` learns plain data (numbers, strings, lists) on the training
  split; ``exprs(state)`` turns that frozen state into expressions that use only
  constants, so a row's value never depends on the other rows of its batch.

Every output is cast to its declared dtype, so a one-row micro-batch and a ten-million-row
frame give the same column types.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from headwater.errors import UserError

State = dict[str, Any]

# Formats tried in order by parse_datetime: King County's compact form, then ISO forms.
DEFAULT_DATETIME_FORMATS = ("%Y%m%dT%H%M%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")


class FeatureDefinitionError(UserError):
    """A feature or feature set is declared wrongly (bad argument, unknown column, duplicate name)."""


def _expr(value: str | pl.Expr) -> pl.Expr:
    return pl.col(value) if isinstance(value, str) else value


def _name_of(value: str | pl.Expr, name: str | None, kind: str) -> str:
    if name is not None:
        return name
    if isinstance(value, str):
        return value
    if value.meta.is_column():
        return value.meta.output_name()
    # Polars would name ``a / b`` after ``a``: a silent clash with the column's own feature.
    raise FeatureDefinitionError(
        f"{kind}() needs name= when its input is an expression rather than a column: {value}",
        hint=f'for example {kind}(pl.col("a") / pl.col("b"), name="a_per_b")',
    )


# -- stateless helpers ---------------------------------------------------------------


def ratio(numerator: str | pl.Expr, denominator: str | pl.Expr) -> pl.Expr:
    """``numerator / denominator`` as Float64; null where the denominator is 0 or null (never inf)."""
    num = _expr(numerator).cast(pl.Float64)
    den = _expr(denominator).cast(pl.Float64)
    return pl.when(den == 0).then(None).otherwise(num / den)


def log1p(value: str | pl.Expr) -> pl.Expr:
    """``log(1 + x)`` as Float64 (null for null, NaN below -1, as numpy does)."""
    return _expr(value).cast(pl.Float64).log1p()


def clip(value: str | pl.Expr, lower: float | None = None, upper: float | None = None) -> pl.Expr:
    """Bound values to ``[lower, upper]`` (either side may be None)."""
    return _expr(value).clip(lower, upper)


def parse_datetime(value: str | pl.Expr, formats: Sequence[str] = DEFAULT_DATETIME_FORMATS) -> pl.Expr:
    """A Datetime from text, trying each ``strftime`` format in order; malformed text gives null.

    The formats are explicit on purpose: Polars' format inference looks at the first value of
    the batch, so two batches could parse the same text differently.
    """
    text = _expr(value).cast(pl.String)
    return pl.coalesce([text.str.strptime(pl.Datetime("us"), fmt, strict=False, exact=True) for fmt in formats])


_PARTS = {
    "year": lambda e: e.dt.year(),
    "month": lambda e: e.dt.month(),
    "day": lambda e: e.dt.day(),
    "weekday": lambda e: e.dt.weekday(),
    "hour": lambda e: e.dt.hour(),
    "ordinal_day": lambda e: e.dt.ordinal_day(),
    "quarter": lambda e: e.dt.quarter(),
}


def date_part(value: str | pl.Expr, part: str, formats: Sequence[str] = DEFAULT_DATETIME_FORMATS) -> pl.Expr:
    """One part (``year``, ``month``, ``day``, ``weekday``, ``hour``, ``ordinal_day``, ``quarter``) as Int32.

    ``value`` is a Date/Datetime expression, or a column name whose text is parsed with
    ``formats`` (a string column name is always parsed; pass ``pl.col(name)`` for a temporal one).
    """
    if part not in _PARTS:
        raise FeatureDefinitionError(f"date_part() got part {part!r}", hint=f"use one of {sorted(_PARTS)}")
    expr = parse_datetime(value, formats) if isinstance(value, str) else value
    result: pl.Expr = _PARTS[part](expr)
    return result.cast(pl.Int32)


def regex_extract(value: str | pl.Expr, pattern: str, group: int = 1) -> pl.Expr:
    """The ``group`` of the first match of ``pattern`` in the text; null when it does not match."""
    return _expr(value).cast(pl.String).str.extract(pattern, group)


def map_values(value: str | pl.Expr, mapping: Mapping[Any, Any], default: Any = None) -> pl.Expr:
    """Conditional mapping: each key of ``mapping`` becomes its value, anything else ``default``."""
    return _expr(value).replace_strict(list(mapping), list(mapping.values()), default=default)


def fill(value: str | pl.Expr, constant: Any) -> pl.Expr:
    """Nulls (and NaN, for floats) replaced by ``constant``."""
    expr = _expr(value)
    if isinstance(constant, float | int) and not isinstance(constant, bool):
        expr = expr.fill_nan(constant) if isinstance(constant, float) else expr
    return expr.fill_null(constant)


# -- JSON-safe floats ----------------------------------------------------------------


def encode_float(x: float | None) -> float | str | None:
    """A float for JSON state: finite floats as they are (``repr`` round-trips exactly), others as text."""
    if x is None or math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def decode_float(x: float | int | str | None) -> float | None:
    return None if x is None else float(x)


# -- features --------------------------------------------------------------------------


class Transform:
    """Base of every feature: a name (the output prefix), the input columns and how to build outputs."""

    kind = "transform"
    fitted = False

    def __init__(self, name: str) -> None:
        self.name = name

    def root_names(self) -> list[str]:
        """The input columns this feature reads."""
        raise NotImplementedError

    def fit(self, frame: pl.DataFrame) -> State:
        """Learn the state on the training frame (already conformed to the input schema)."""
        return {}

    def exprs(self, state: State, schema: Mapping[str, pl.DataType]) -> list[pl.Expr]:
        """The output expressions, each aliased to its output name, built from frozen ``state``.

        ``schema`` gives the dtypes of the columns the expressions read (inputs and derived).
        """
        raise NotImplementedError

    def output_dtypes(self, state: State, input_schema: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
        """Output names and dtypes, in order, for this state (``input_schema``: inputs and derived columns)."""
        raise NotImplementedError


class Feature(Transform):
    """A stateless, row-wise feature: any Polars expression over the input columns.

    ``dtype`` defaults to what Polars infers from the input schema (not from data). The
    expression must be row-wise: aggregations (``mean()``, ``rank()``) over the batch would
    make a value depend on its micro-batch; use a fitted transform instead.
    """

    kind = "expr"

    def __init__(self, name: str, expr: str | pl.Expr, dtype: pl.DataType | type[pl.DataType] | None = None) -> None:
        super().__init__(name)
        self.expr = _expr(expr)
        self.dtype = dtype() if isinstance(dtype, type) else dtype

    def root_names(self) -> list[str]:
        return self.expr.meta.root_names()

    def exprs(self, state: State, schema: Mapping[str, pl.DataType]) -> list[pl.Expr]:
        return [self.expr.alias(self.name)]

    def output_dtypes(self, state: State, input_schema: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
        if self.dtype is not None:
            return {self.name: self.dtype}
        inferred = pl.DataFrame(schema=dict(input_schema)).lazy().select(self.expr.alias(self.name))
        dtype = inferred.collect_schema()[self.name]
        if dtype == pl.Null:
            raise FeatureDefinitionError(
                f"feature {self.name!r} has no type of its own (a null literal?)", hint="pass dtype=..."
            )
        return {self.name: dtype}


class _Fitted(Transform):
    fitted = True

    def __init__(self, value: str | pl.Expr, name: str | None, kind: str) -> None:
        super().__init__(_name_of(value, name, kind))
        self.input = _expr(value)

    def root_names(self) -> list[str]:
        return self.input.meta.root_names()

    def _training_values(self, frame: pl.DataFrame) -> pl.Series:
        """The input's finite, non-null training values as Float64 (NaN and inf say nothing about scale)."""
        s = frame.select(self.input.cast(pl.Float64).alias("x")).to_series()
        return s.filter(s.is_finite())


class Impute(_Fitted):
    """Nulls (and NaN) replaced by the training ``median``, ``mean`` or ``mode`` (most frequent; ties: smallest)."""

    kind = "impute"

    def __init__(self, value: str | pl.Expr, strategy: str = "median", *, name: str | None = None) -> None:
        super().__init__(value, name, "Impute")
        if strategy not in ("median", "mean", "mode"):
            raise FeatureDefinitionError(f"Impute() got strategy {strategy!r}", hint="use median, mean or mode")
        self.strategy = strategy

    def fit(self, frame: pl.DataFrame) -> State:
        if self.strategy == "mode":
            s = frame.select(self.input.alias("x")).to_series().drop_nulls()
            if s.dtype.is_float():
                s = s.drop_nans()
            if s.is_empty():
                return {"value": None}
            counts = s.value_counts(name="n").sort(["n", "x"], descending=[True, False])
            top = counts["x"][0]
            if isinstance(top, float):
                return {"value": encode_float(top), "float": True}
            return {"value": top}
        values = self._training_values(frame)
        stat = values.median() if self.strategy == "median" else values.mean()
        return {"value": encode_float(None if stat is None else float(stat))}  # type: ignore[arg-type]

    def exprs(self, state: State, schema: Mapping[str, pl.DataType]) -> list[pl.Expr]:
        value = state["value"]
        if self.strategy != "mode":
            value = decode_float(value)
        expr = self.input
        if self.strategy != "mode":
            expr = expr.cast(pl.Float64)
            expr = expr.fill_nan(None)
        elif state.get("float"):
            value = decode_float(value)
        return [expr.fill_null(pl.lit(value)).alias(self.name)]

    def output_dtypes(self, state: State, input_schema: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
        if self.strategy == "mode":
            schema = pl.DataFrame(schema=dict(input_schema)).lazy().select(self.input.alias("x")).collect_schema()
            return {self.name: schema["x"]}
        return {self.name: pl.Float64()}


class StandardScale(_Fitted):
    """``(x - mean) / std`` with the training mean and population std of the finite values (std 0 -> 1)."""

    kind = "standard_scale"

    def __init__(self, value: str | pl.Expr, *, name: str | None = None) -> None:
        super().__init__(value, name, "StandardScale")

    def fit(self, frame: pl.DataFrame) -> State:
        v = self._training_values(frame)
        mean = float(v.mean()) if len(v) else 0.0  # type: ignore[arg-type]
        std = float(v.std(ddof=0)) if len(v) else 1.0  # type: ignore[arg-type]
        if not math.isfinite(mean):
            mean = 0.0  # finite values whose sum overflows
        if not math.isfinite(std) or std == 0.0:
            std = 1.0
        return {"center": mean, "scale": std}

    def exprs(self, state: State, schema: Mapping[str, pl.DataType]) -> list[pl.Expr]:
        center, scale = float(state["center"]), float(state["scale"])
        return [((self.input.cast(pl.Float64) - center) / scale).alias(self.name)]

    def output_dtypes(self, state: State, input_schema: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
        return {self.name: pl.Float64()}


class RobustScale(StandardScale):
    """``(x - median) / IQR`` with the training median and 25-75% interquartile range (IQR 0 -> 1)."""

    kind = "robust_scale"

    def fit(self, frame: pl.DataFrame) -> State:
        v = self._training_values(frame)
        if not len(v):
            return {"center": 0.0, "scale": 1.0}
        median = float(v.median())  # type: ignore[arg-type]
        iqr = float(v.quantile(0.75, "linear")) - float(v.quantile(0.25, "linear"))  # type: ignore[arg-type]
        if not math.isfinite(iqr) or iqr == 0.0:
            iqr = 1.0
        return {"center": median if math.isfinite(median) else 0.0, "scale": iqr}


def _as_text(expr: pl.Expr) -> pl.Expr:
    """Category values as text: vocabularies are lists of strings whatever the input type."""
    return expr.cast(pl.String)


def _dtype_of(expr: pl.Expr, schema: Mapping[str, pl.DataType]) -> pl.DataType:
    """The dtype ``expr`` gives on columns of ``schema`` (from the schema alone, never from data)."""
    return pl.DataFrame(schema=dict(schema)).lazy().select(expr.alias("x")).collect_schema()["x"]


def _vocabulary(frame: pl.DataFrame, expr: pl.Expr, max_categories: int | None, min_count: int) -> list[str]:
    """Training categories: most frequent first up to ``max_categories``, then sorted (stable across runs)."""
    s = frame.select(_as_text(expr).alias("x")).to_series().drop_nulls()
    counts = s.value_counts(name="n").filter(pl.col("n") >= min_count).sort(["n", "x"], descending=[True, False])
    if max_categories is not None:
        counts = counts.head(max_categories)
    return sorted(counts["x"].to_list())


class OneHot(_Fitted):
    """One UInt8 column per training category, named ``{name}_{category}``, plus two explicit columns.

    ``{name}__other`` is 1 for a category not seen in training (or dropped by
    ``max_categories``/``min_count``); ``{name}__null`` is 1 for null. Every row has exactly
    one 1.
    """

    kind = "one_hot"

    def __init__(
        self, value: str | pl.Expr, *, name: str | None = None, max_categories: int | None = None, min_count: int = 1
    ) -> None:
        super().__init__(value, name, "OneHot")
        self.max_categories, self.min_count = max_categories, min_count

    def fit(self, frame: pl.DataFrame) -> State:
        return {"vocabulary": _vocabulary(frame, self.input, self.max_categories, self.min_count)}

    def exprs(self, state: State, schema: Mapping[str, pl.DataType]) -> list[pl.Expr]:
        vocab: list[str] = state["vocabulary"]
        dtype = _dtype_of(self.input, schema)
        # Compare in the input's own type when the text round-trips (integers, text): one
        # cast per output column would dominate the cost (~5 ms for 20 zipcodes on 10k rows).
        values: list[Any] = vocab
        value = self.input
        if dtype.is_integer():
            values = [int(v) for v in vocab]
        elif dtype != pl.String:
            value = _as_text(self.input)
        out = [
            (value == pl.lit(v)).fill_null(False).cast(pl.UInt8).alias(f"{self.name}_{text}")
            for v, text in zip(values, vocab, strict=True)
        ]
        other = (value.is_not_null() & ~value.is_in(values)).cast(pl.UInt8)
        out.append(other.alias(f"{self.name}__other"))
        out.append(value.is_null().cast(pl.UInt8).alias(f"{self.name}__null"))
        return out

    def output_dtypes(self, state: State, input_schema: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
        names = [f"{self.name}_{v}" for v in state["vocabulary"]] + [f"{self.name}__other", f"{self.name}__null"]
        return {n: pl.UInt8() for n in names}


class Ordinal(_Fitted):
    """Training categories coded 0..n-1 in sorted order; unseen -> ``other`` (-1), null -> ``missing`` (-2). Int32."""

    kind = "ordinal"

    def __init__(
        self,
        value: str | pl.Expr,
        *,
        name: str | None = None,
        max_categories: int | None = None,
        min_count: int = 1,
        other: int = -1,
        missing: int = -2,
    ) -> None:
        super().__init__(value, name, "Ordinal")
        self.max_categories, self.min_count = max_categories, min_count
        self.other, self.missing = other, missing

    def fit(self, frame: pl.DataFrame) -> State:
        return {"vocabulary": _vocabulary(frame, self.input, self.max_categories, self.min_count)}

    def exprs(self, state: State, schema: Mapping[str, pl.DataType]) -> list[pl.Expr]:
        text = _as_text(self.input)
        vocab: list[str] = state["vocabulary"]
        codes = text.replace_strict(vocab, list(range(len(vocab))), default=self.other, return_dtype=pl.Int32)
        return [pl.when(text.is_null()).then(pl.lit(self.missing, pl.Int32)).otherwise(codes).alias(self.name)]

    def output_dtypes(self, state: State, input_schema: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
        return {self.name: pl.Int32()}


class FrequencyEncode(_Fitted):
    """Each category's share of the training rows (Float64); unseen -> 0.0, null -> the training share of nulls."""

    kind = "frequency"

    def __init__(self, value: str | pl.Expr, *, name: str | None = None) -> None:
        super().__init__(value, name, "FrequencyEncode")

    def fit(self, frame: pl.DataFrame) -> State:
        s = frame.select(_as_text(self.input).alias("x")).to_series()
        total = len(s)
        if total == 0:
            return {"categories": [], "frequencies": [], "null": 0.0}
        counts = s.drop_nulls().value_counts(name="n").sort("x")
        return {
            "categories": counts["x"].to_list(),
            "frequencies": [n / total for n in counts["n"].to_list()],
            "null": s.null_count() / total,
        }

    def exprs(self, state: State, schema: Mapping[str, pl.DataType]) -> list[pl.Expr]:
        text = _as_text(self.input)
        freq = text.replace_strict(
            state["categories"], [float(f) for f in state["frequencies"]], default=0.0, return_dtype=pl.Float64
        )
        null = pl.lit(float(state["null"]), pl.Float64)
        return [pl.when(text.is_null()).then(null).otherwise(freq).alias(self.name)]

    def output_dtypes(self, state: State, input_schema: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
        return {self.name: pl.Float64()}


class QuantileBucket(_Fitted):
    """Bucket index 0..len(edges) against the training quantile edges (Int32); null and NaN -> ``missing`` (-1).

    ``buckets`` quantiles of the finite training values give at most ``buckets - 1`` distinct
    edges; a value falls in bucket ``i`` when exactly ``i`` edges are <= it.
    """

    kind = "quantile_bucket"

    def __init__(self, value: str | pl.Expr, buckets: int = 4, *, name: str | None = None, missing: int = -1) -> None:
        super().__init__(value, name, "QuantileBucket")
        if buckets < 2:
            raise FeatureDefinitionError(f"QuantileBucket() needs buckets >= 2, got {buckets}")
        self.buckets, self.missing = buckets, missing

    def fit(self, frame: pl.DataFrame) -> State:
        v = self._training_values(frame)
        if not len(v):
            return {"edges": []}
        qs = [float(v.quantile(i / self.buckets, "linear")) for i in range(1, self.buckets)]  # type: ignore[arg-type]
        return {"edges": sorted(set(qs))}

    def exprs(self, state: State, schema: Mapping[str, pl.DataType]) -> list[pl.Expr]:
        x = self.input.cast(pl.Float64)
        edges = [float(e) for e in state["edges"]]
        if edges:
            bucket = pl.sum_horizontal([(x >= e).cast(pl.Int32) for e in edges]).cast(pl.Int32)
        else:
            bucket = pl.lit(0, pl.Int32)
        missing = x.is_null() | x.is_nan()
        return [pl.when(missing).then(pl.lit(self.missing, pl.Int32)).otherwise(bucket).alias(self.name)]

    def output_dtypes(self, state: State, input_schema: Mapping[str, pl.DataType]) -> dict[str, pl.DataType]:
        return {self.name: pl.Int32()}
