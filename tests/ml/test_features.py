"""FeatureSet: definition, fitting on training data only, schemas, validation, state round trip."""

from __future__ import annotations

import json

import polars as pl
import pytest

from headwater.errors import UserError
from headwater.ml.features import (
    FeatureInputError,
    FeatureSet,
    FeatureStateError,
    frames_identical,
)
from headwater.ml.transforms import (
    Feature,
    FeatureDefinitionError,
    FrequencyEncode,
    Impute,
    OneHot,
    Ordinal,
    QuantileBucket,
    RobustScale,
    StandardScale,
    date_part,
    parse_datetime,
    ratio,
)
from tests.ml.house_features import house_features, synthetic_houses


@pytest.fixture(scope="module")
def houses() -> pl.DataFrame:
    return synthetic_houses(1000, seed=7)


# -- the house-price example -----------------------------------------------------------


def test_house_features_have_a_fixed_output_schema(houses: pl.DataFrame) -> None:
    fitted = house_features().fit(houses)
    out = fitted.transform(houses)

    assert out.schema == pl.Schema(fitted.output_schema)
    assert out.columns[:4] == ["living_per_lot", "log_sqft_living", "bedrooms", "bathrooms"]
    assert fitted.output_schema["renovated"] == pl.Boolean
    assert fitted.output_schema["age"] == pl.Int32
    # 20 most frequent training zipcodes, then the explicit other and null columns.
    zip_columns = [c for c in out.columns if c.startswith("zipcode_")]
    assert len(zip_columns) == 22
    assert zip_columns[-2:] == ["zipcode__other", "zipcode__null"]
    assert fitted.input_schema == house_features().input_schema


def test_house_feature_values(houses: pl.DataFrame) -> None:
    fitted = house_features().fit(houses)
    row = {**houses.row(0, named=True)}
    row.update(
        date="20140625T000000",
        yr_built=1990,
        yr_renovated=0,
        bedrooms=33,
        sqft_living=2000,
        sqft_lot=8000,
        zipcode=99999,
    )

    out = fitted.transform(pl.DataFrame([row], schema=houses.schema)).row(0, named=True)

    assert out["living_per_lot"] == 0.25
    assert out["sale_year"] == 2014 and out["sale_month"] == 6
    assert out["age"] == 24
    assert out["renovated"] is False  # yr_renovated == 0 means never
    assert out["bedrooms"] == 10  # 33 bedrooms is a typo in the real data: clipped
    assert out["zipcode__other"] == 1 and out["zipcode__null"] == 0  # never seen in training
    assert sum(v for k, v in out.items() if k.startswith("zipcode_")) == 1


def test_fitted_state_comes_from_the_training_split_only(houses: pl.DataFrame) -> None:
    train, test = houses.head(700), houses.tail(300)
    test = test.with_columns(pl.lit(12345, pl.Int64).alias("zipcode"), pl.col("lat") + 10.0)

    fitted = house_features().fit(train)
    by_name = {f.name: s for f, s in zip(fitted.definition.features, fitted.states, strict=True)}

    assert by_name["lat"]["center"] == pytest.approx(train["lat"].mean())
    assert "12345" not in by_name["zipcode"]["vocabulary"]
    assert fitted.transform(test)["zipcode__other"].to_list() == [1] * 300


def test_state_is_json_and_reloads_identically(houses: pl.DataFrame) -> None:
    fitted = house_features().fit(houses.head(600))
    text = json.dumps(fitted.state(), allow_nan=False)

    reloaded = house_features().load_state(json.loads(text))
    via_function = FeatureSet.from_state(house_features, json.loads(text))

    assert frames_identical(reloaded.transform(houses), fitted.transform(houses))
    assert frames_identical(via_function.transform(houses), fitted.transform(houses))
    assert reloaded.state() == fitted.state()


def test_state_format(houses: pl.DataFrame) -> None:
    state = house_features().fit(houses).state()

    assert state["format"] == "headwater.features/1"
    assert state["name"] == "house_prices"
    assert state["input_schema"][0] == ["date", "String"]
    assert ["renovated", "Boolean"] in state["output_schema"]
    assert {"name": "bathrooms", "kind": "impute", "state": {"value": 1.75}} in state["features"]
    assert state["source_hash"].startswith("sha256:") and len(state["source_hash"]) == 71


def test_source_hash_follows_the_defining_code() -> None:
    assert house_features().source_hash() == house_features().source_hash()

    def definition_a() -> FeatureSet:
        return FeatureSet("s", {"x": pl.Float64}, [Feature("y", pl.col("x") + 1)], source=definition_a)

    def definition_b() -> FeatureSet:
        return FeatureSet("s", {"x": pl.Float64}, [Feature("y", pl.col("x") + 2)], source=definition_b)

    assert definition_a().source_hash() != definition_b().source_hash()


# -- loading a state that does not fit -------------------------------------------------


def _simple(*features: object, name: str = "s") -> FeatureSet:
    return FeatureSet(name, {"x": pl.Float64, "c": pl.String}, list(features))  # type: ignore[arg-type]


def test_load_state_refuses_a_state_of_another_feature_set() -> None:
    frame = pl.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})
    state = _simple(StandardScale("x")).fit(frame).state()

    with pytest.raises(FeatureStateError, match="is for 's', not 'other'"):
        _simple(StandardScale("x"), name="other").load_state(state)
    with pytest.raises(FeatureStateError, match="has features"):
        _simple(StandardScale("x"), OneHot("c")).load_state(state)
    with pytest.raises(FeatureStateError, match="format"):
        _simple(StandardScale("x")).load_state({**state, "format": "pickle"})


def test_load_state_can_insist_on_the_same_source() -> None:
    frame = pl.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]})
    state = _simple(StandardScale("x")).fit(frame).state()

    with pytest.raises(FeatureStateError, match=r"fitted with source sha256:0+, the code now hashes to sha256:"):
        _simple(StandardScale("x")).load_state({**state, "source_hash": "sha256:" + "0" * 64}, check_source=True)
    assert _simple(StandardScale("x")).load_state({**state, "source_hash": "sha256:" + "0" * 64}).name == "s"


# -- input validation ------------------------------------------------------------------


def test_a_missing_column_is_a_user_error_naming_it() -> None:
    fitted = _simple(StandardScale("x")).fit(pl.DataFrame({"x": [1.0], "c": ["a"]}))

    with pytest.raises(FeatureInputError, match=r"needs column 'c' \(String\)") as info:
        fitted.transform(pl.DataFrame({"x": [1.0]}))
    assert isinstance(info.value, UserError)


def test_a_wrong_type_names_the_column_and_what_was_expected() -> None:
    fitted = _simple(StandardScale("x")).fit(pl.DataFrame({"x": [1.0], "c": ["a"]}))

    with pytest.raises(FeatureInputError, match="column 'x' should be Float64, got String"):
        fitted.transform(pl.DataFrame({"x": ["1.5"], "c": ["a"]}))


def test_compatible_types_are_cast_to_the_input_schema() -> None:
    fitted = FeatureSet("s", {"x": pl.Float64, "n": pl.Int64}, [Feature("y", pl.col("x") + pl.col("n"))]).fit(
        pl.DataFrame({"x": [1.0], "n": [1]})
    )
    # A JSON micro-batch whose floats are whole infers Int64; an all-null one infers Null.
    small = pl.DataFrame({"x": [2, 3], "n": pl.Series([1, 2], dtype=pl.Int32)})
    nulls = pl.DataFrame({"x": [None], "n": [None]})

    assert fitted.transform(small)["y"].to_list() == [3.0, 5.0]
    assert fitted.transform(nulls).schema == pl.Schema({"y": pl.Float64})


def test_validate_rows_says_which_rows_are_bad_and_why() -> None:
    fs = FeatureSet("s", {"x": pl.Float64, "n": pl.Int64}, [Feature("y", pl.col("x"))], required=["n"])
    frame = pl.DataFrame({"x": ["1.5", "abc", None, "2"], "n": [1, 2, None, 3]})

    reasons = fs.validate_rows(frame).to_list()

    assert reasons == [
        None,
        "column 'x': expected Float64, got abc",
        "column 'n' is required, got null",
        None,
    ]
    # The good rows parse: scoring them with coerce=True turns their text into the declared types.
    good = frame.filter(fs.validate_rows(frame).is_null())
    fitted = fs.fit(pl.DataFrame({"x": [0.0], "n": [0]}))
    assert fitted.transform(good, coerce=True)["y"].to_list() == [1.5, 2.0]


def test_validate_rows_reports_a_missing_column_on_every_row() -> None:
    fs = FeatureSet("s", {"x": pl.Float64, "n": pl.Int64}, [Feature("y", pl.col("x"))])

    reasons = fs.validate_rows(pl.DataFrame({"x": [1.0, 2.0]}))

    assert reasons.to_list() == ["missing column 'n' (Int64)"] * 2


# -- definition errors -----------------------------------------------------------------


def test_a_feature_reading_an_undeclared_column_is_refused() -> None:
    with pytest.raises(FeatureDefinitionError, match=r"feature 'y' of 's' reads \['z'\], which are not declared"):
        FeatureSet("s", {"x": pl.Float64}, [Feature("y", pl.col("z") * 2)])


def test_duplicate_feature_names_are_refused() -> None:
    with pytest.raises(FeatureDefinitionError, match="two features named 'x'"):
        FeatureSet("s", {"x": pl.Float64}, [Feature("x", "x"), StandardScale("x")])


def test_a_fitted_transform_on_an_expression_needs_a_name() -> None:
    with pytest.raises(FeatureDefinitionError, match="needs name="):
        StandardScale(pl.col("x") / pl.col("y"))
    assert StandardScale(pl.col("x") / pl.col("y"), name="x_per_y").name == "x_per_y"


# -- transforms ------------------------------------------------------------------------


def _fit_one(feature: object, train: dict[str, list[object]], score: dict[str, list[object]]) -> list[object]:
    schema = {name: pl.Series(values).dtype for name, values in train.items()}
    fs = FeatureSet("t", schema, [feature])  # type: ignore[list-item]
    out = fs.fit(pl.DataFrame(train, schema=schema)).transform(pl.DataFrame(score, schema=schema))
    return out.to_series(0).to_list() if out.width == 1 else out.rows()


def test_impute_uses_the_training_median_and_treats_nan_as_missing() -> None:
    out = _fit_one(Impute("x"), {"x": [1.0, 2.0, 10.0, None, float("nan")]}, {"x": [None, float("nan"), 5.0]})

    assert out == [2.0, 2.0, 5.0]


def test_impute_mode_breaks_ties_by_the_smallest_value() -> None:
    out = _fit_one(Impute("c", "mode"), {"c": ["b", "a", "b", "a", None]}, {"c": [None, "z"]})

    assert out == ["a", "z"]


def test_robust_scale_uses_median_and_iqr() -> None:
    out = _fit_one(RobustScale("x"), {"x": [1.0, 2.0, 3.0, 4.0, 5.0, 1e9]}, {"x": [3.5, None]})

    # median 3.5, quartiles 2.25 and 4.75: the outlier does not set the scale.
    assert out == [0.0, None]


def test_standard_scale_of_a_constant_column_does_not_divide_by_zero() -> None:
    assert _fit_one(StandardScale("x"), {"x": [3.0, 3.0]}, {"x": [4.0]}) == [1.0]


def test_one_hot_has_explicit_other_and_null_columns() -> None:
    rows = _fit_one(OneHot("c"), {"c": ["a", "b", "a"]}, {"c": ["a", "b", "new", None, ""]})

    # Columns: c_a, c_b, c__other, c__null.
    assert rows == [(1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1), (0, 0, 1, 0)]


def test_one_hot_max_categories_keeps_the_most_frequent() -> None:
    fitted = FeatureSet("t", {"c": pl.String}, [OneHot("c", max_categories=2)]).fit(
        pl.DataFrame({"c": ["x", "y", "y", "z", "z", "z"]})
    )

    assert list(fitted.output_schema) == ["c_y", "c_z", "c__other", "c__null"]


def test_ordinal_codes_unseen_and_null_explicitly() -> None:
    out = _fit_one(Ordinal("c"), {"c": ["b", "a", "c"]}, {"c": ["a", "c", "new", None]})

    assert out == [0, 2, -1, -2]


def test_frequency_encoding_uses_training_shares() -> None:
    out = _fit_one(FrequencyEncode("c"), {"c": ["a", "a", "b", None]}, {"c": ["a", "b", "new", None]})

    assert out == [0.5, 0.25, 0.0, 0.25]


def test_quantile_buckets_use_training_edges() -> None:
    train = {"x": [float(i) for i in range(1, 101)]}
    out = _fit_one(
        QuantileBucket("x", 4), train, {"x": [-1e308, 25.0, 26.0, 50.9, 1e9, float("inf"), None, float("nan")]}
    )

    assert out == [0, 0, 1, 2, 3, 3, -1, -1]


def test_date_parts_from_both_date_formats_and_malformed_text() -> None:
    fs = FeatureSet(
        "d",
        {"date": pl.String},
        [Feature("year", date_part("date", "year")), Feature("month", date_part("date", "month"))],
    )
    frame = pl.DataFrame({"date": ["20140625T000000", "2015-02-03", "2014-02-30", "garbage", None]})

    out = fs.fit(frame).transform(frame)

    assert out.rows() == [(2014, 6), (2015, 2), (None, None), (None, None), (None, None)]
    assert out.schema == pl.Schema({"year": pl.Int32, "month": pl.Int32})


def test_ratio_gives_null_rather_than_inf_for_a_zero_denominator() -> None:
    assert _fit_one(
        Feature("r", ratio("a", "b")), {"a": [1, 1, 1], "b": [4, 0, None]}, {"a": [1, 1, 1], "b": [4, 0, None]}
    ) == [0.25, None, None]


def test_an_empty_and_an_all_null_frame_keep_the_output_schema(houses: pl.DataFrame) -> None:
    fitted = house_features().fit(houses)
    nulls = pl.DataFrame({c: [None] for c in fitted.input_schema})

    assert fitted.transform(houses.head(0)).schema == pl.Schema(fitted.output_schema)
    assert fitted.transform(nulls).schema == pl.Schema(fitted.output_schema)


def test_derived_columns_are_computed_once_and_not_output() -> None:
    fs = FeatureSet(
        "d",
        {"date": pl.String},
        [Feature("year", date_part(pl.col("when"), "year")), Feature("month", date_part(pl.col("when"), "month"))],
        derived={"when": parse_datetime("date")},
    )
    frame = pl.DataFrame({"date": ["20140625T000000", "bad"]})

    out = fs.fit(frame).transform(frame)

    assert out.columns == ["year", "month"]
    assert out.rows() == [(2014, 6), (None, None)]


def test_derived_columns_read_inputs_only_under_new_names() -> None:
    with pytest.raises(FeatureDefinitionError, match=r"derived column 'w' of 'd' reads \['nope'\]"):
        FeatureSet("d", {"x": pl.Float64}, [Feature("y", "x")], derived={"w": pl.col("nope")})
    with pytest.raises(FeatureDefinitionError, match="derived column 'x' of 'd' shadows an input"):
        FeatureSet("d", {"x": pl.Float64}, [Feature("y", "x")], derived={"x": pl.col("x") * 2})


@pytest.mark.parametrize(
    ("dtype", "train", "score"),
    [
        (pl.Int64, [98001, 98002], [98001, 12, None]),
        (pl.String, ["98001", "98002"], ["98001", "12", None]),
        (pl.Float64, [98001.0, 98002.0], [98001.0, 12.0, None]),
        (pl.Boolean, [True, False], [True, None, None]),
    ],
)
def test_one_hot_matches_the_vocabulary_in_any_input_type(dtype: pl.DataType, train: list, score: list) -> None:
    fitted = FeatureSet("t", {"z": dtype}, [OneHot("z")]).fit(pl.DataFrame({"z": train}, schema={"z": dtype}))

    out = fitted.transform(pl.DataFrame({"z": score}, schema={"z": dtype}))

    assert len(fitted.output_schema) == 4
    assert out.row(0)[:2] in ((1, 0), (0, 1))  # a training value hits exactly one vocabulary column
    assert out.row(2) == (0, 0, 0, 1)  # null
    assert all(sum(row) == 1 for row in out.rows())


@pytest.mark.parametrize(
    "expr",
    [
        pl.col("x") - pl.col("x").mean(),
        pl.col("x").rank(),
        pl.col("x").shift(1),
        pl.col("x").cum_sum(),
        pl.col("x").sum(),
        pl.col("x") / pl.col("x").max().over("c"),
    ],
)
def test_a_feature_depending_on_other_rows_is_refused(expr: pl.Expr) -> None:
    with pytest.raises(FeatureDefinitionError, match="feature 'y' of 's' is not row-wise"):
        FeatureSet("s", {"x": pl.Float64, "c": pl.String}, [Feature("y", expr)])
    with pytest.raises(FeatureDefinitionError, match="is not row-wise"):
        FeatureSet("s", {"x": pl.Float64, "c": pl.String}, [StandardScale(expr, name="y")])


def test_validate_rows_flags_fractions_and_overflow_for_integer_inputs() -> None:
    fs = FeatureSet("s", {"n": pl.Int32, "b": pl.Float64}, [Feature("y", "n")])
    frame = pl.DataFrame({"n": [1.0, 1.5, 3e10, None, float("nan")], "b": [0.0] * 5})

    reasons = fs.validate_rows(frame)

    assert reasons.to_list() == [
        None,
        "column 'n': expected Int32, got 1.5",
        "column 'n': expected Int32, got 30000000000.0",
        None,
        "column 'n': expected Int32, got NaN",
    ]
    good = frame.filter(reasons.is_null())
    assert fs.fit(good.head(1).with_columns(pl.col("n").cast(pl.Int32))).transform(good, coerce=True)[
        "y"
    ].to_list() == [1, None]


def test_validate_rows_flags_every_row_of_a_column_of_an_unusable_type() -> None:
    fs = FeatureSet("s", {"x": pl.Float64}, [Feature("y", "x")])

    reasons = fs.validate_rows(pl.DataFrame({"x": [True, None]}))

    assert reasons.to_list() == ["column 'x': expected Float64, got Boolean"] * 2


def test_a_constant_feature_is_refused() -> None:
    with pytest.raises(FeatureDefinitionError, match="feature 'one' of 's' reads no column"):
        FeatureSet("s", {"x": pl.Float64}, [Feature("one", pl.lit(1.0))])
