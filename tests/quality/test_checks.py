"""Record checks against a training profile, on frames (batch): every kind of violation, clean rows, config errors."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from headwater.ml.profile import profile
from headwater.quality import CheckConfigError, ProfileChecks, check_frame

TRAIN = pl.DataFrame({
    "sqft": [400 + 100 * i for i in range(57)],  # 400 .. 6000, no nulls
    "baths": [None if i % 10 == 0 else 1.0 + (i % 4) * 0.5 for i in range(57)],  # has nulls
    "zipcode": [98001 + 3 * (i % 5) for i in range(57)],  # integer-coded categories
    "city": [["Seattle", "Kent", "Redmond"][i % 3] for i in range(57)],
    "price": [float(100_000 + i) for i in range(57)],
})


@pytest.fixture(scope="module")
def prof() -> dict[str, Any]:
    return profile(TRAIN, categorical=["zipcode"])


@pytest.fixture(scope="module")
def checks(prof: dict[str, Any]) -> ProfileChecks:
    return ProfileChecks(prof, columns=["sqft", "baths", "zipcode", "city"])


def _codes(frame: pl.DataFrame, checks: ProfileChecks) -> list[list[str]]:
    codes: list[list[str]] = checks.check(frame).frame.get_column("data_checks").to_list()
    return codes


def test_clean_rows_get_an_empty_list_and_keep_their_values(checks: ProfileChecks) -> None:
    rows = TRAIN.drop("price").head(10)
    result = checks.check(rows)
    assert result.frame.get_column("data_checks").to_list() == [[]] * 10
    assert result.frame.drop("data_checks").equals(rows)
    assert result.clean.equals(rows)
    assert result.summary.rows == 10 and result.summary.rows_with_violations == 0 and result.summary.total() == 0


def test_each_kind_of_violation_is_reported_on_its_row_only(checks: ProfileChecks) -> None:
    frame = pl.DataFrame({
        "sqft": [1000, 399, 6001, None, 2000, 2000],
        "baths": [None, 1.0, 1.5, 2.0, 2.0, 2.0],  # training had nulls: accepted
        "zipcode": [98001, 98004, 98013, 98001, 99999, 98001],
        "city": ["Kent", "Kent", "Kent", "Kent", "Kent", "Tacoma"],
    })
    assert _codes(frame, checks) == [
        [],
        ["range:sqft"],
        ["range:sqft"],
        ["null:sqft"],
        ["unseen:zipcode"],
        ["unseen:city"],
    ]
    summary = checks.check(frame).summary
    assert summary.counts == {"range": {"sqft": 2}, "null": {"sqft": 1}, "unseen": {"zipcode": 1, "city": 1}}
    assert summary.rows_with_violations == 5 and summary.total("range") == 2


def test_a_missing_column_is_reported_on_every_row(checks: ProfileChecks) -> None:
    frame = pl.DataFrame({"sqft": [1000, 2000], "baths": [1.0, 1.0], "zipcode": [98001, 98001]})
    assert _codes(frame, checks) == [["missing:city"], ["missing:city"]]


def test_wrong_types_and_unparseable_values(checks: ProfileChecks) -> None:
    # A JSON micro-batch with one bad value gives a String column: numbers in text still parse.
    text = pl.DataFrame({"sqft": ["1000", "abc", " 2500 ", "1000.5"], "baths": [1.0] * 4,
                         "zipcode": ["98001", "98001", "98004", "98001"], "city": ["Kent"] * 4})
    assert _codes(text, checks) == [[], ["type:sqft"], [], ["type:sqft"]]
    fractions = pl.DataFrame({"sqft": [1000.0, 1000.5], "baths": [1.0, 1.0], "zipcode": [98001, 98001],
                              "city": ["Kent", "Kent"]})
    assert _codes(fractions, checks) == [[], ["type:sqft"]]  # a fraction where training had integers
    nested = pl.DataFrame({"sqft": [[1], None], "baths": [1.0, 1.0], "zipcode": [98001, 98001],
                           "city": ["Kent", "Kent"]})
    assert _codes(nested, checks) == [["type:sqft"], ["null:sqft"]]


def test_nan_where_training_had_none_is_a_null_and_infinity_is_out_of_range(prof: dict[str, Any]) -> None:
    floats = ProfileChecks(profile(TRAIN.with_columns(pl.col("price"))), columns=["price"])
    frame = pl.DataFrame({"price": [100_010.0, float("nan"), float("inf")]})
    assert _codes(frame, floats) == [[], ["null:price"], ["range:price"]]


def test_tolerance_widens_the_range_by_a_share_of_its_width(prof: dict[str, Any]) -> None:
    width = 6000 - 400
    loose = ProfileChecks(prof, columns=["sqft"], tolerance={"sqft": 0.1})
    frame = pl.DataFrame({"sqft": [6000 + width // 10, 6000 + width // 10 + 1, 400 - width // 10]})
    assert _codes(frame, loose) == [[], ["range:sqft"], []]


def test_a_batch_of_one_row_and_a_large_batch_give_the_same_rows(checks: ProfileChecks) -> None:
    frame = pl.DataFrame({"sqft": [1000, 9000, None] * 20_000, "baths": [1.0] * 60_000,
                          "zipcode": [98001, 98001, 12345] * 20_000, "city": ["Kent"] * 60_000})
    big = _codes(frame, checks)
    assert len(big) == 60_000
    alone = [_codes(frame.slice(i, 1), checks)[0] for i in range(3)]
    assert big[:3] == alone == [[], ["range:sqft"], ["null:sqft", "unseen:zipcode"]]
    assert big[3:6] == alone


def test_signature_inputs_choose_the_columns(prof: dict[str, Any]) -> None:
    signature = {"inputs": [{"name": "sqft", "dtype": "Int64"}, {"name": "city", "dtype": "String"}]}
    checks = ProfileChecks(prof, signature=signature)
    assert checks.columns == ["sqft", "city"]
    # price is in the profile (the target) but not an input: its absence is no violation.
    assert _codes(pl.DataFrame({"sqft": [500], "city": ["Kent"]}), checks) == [[]]


def test_integer_codes_need_a_vocabulary_and_say_how_to_get_one() -> None:
    plain = profile(TRAIN.with_columns(pl.col("zipcode") * 1000 + pl.int_range(57)), categories_limit=10)
    with pytest.raises(CheckConfigError) as caught:
        ProfileChecks(plain, columns=["zipcode"], categorical=["zipcode"])
    assert "categorical=['zipcode']" in (caught.value.hint or "")
    given = ProfileChecks(plain, columns=["zipcode"], categorical=["zipcode"], vocabulary={"zipcode": [98001000]})
    assert _codes(pl.DataFrame({"zipcode": [98001000, 98001001]}), given) == [[], ["unseen:zipcode"]]


def test_without_categorical_integer_codes_get_a_range_check(prof: dict[str, Any]) -> None:
    checks = ProfileChecks(prof, columns=["zipcode"], categorical=[])
    assert _codes(pl.DataFrame({"zipcode": [98002, 99999]}), checks) == [[], ["range:zipcode"]]


def test_check_frame_and_skip(prof: dict[str, Any]) -> None:
    frame = pl.DataFrame({"sqft": [9000], "baths": [1.0], "zipcode": [1], "city": ["Kent"]})
    result = check_frame(frame, prof, columns=["sqft", "zipcode"], skip=["range"], column="flags")
    assert result.frame.get_column("flags").to_list() == [["unseen:zipcode"]]


@pytest.mark.parametrize(("options", "words"), [
    ({"columns": ["sqft", "no_such"]}, "no_such"),
    ({"columns": ["sqft"], "tolerance": -0.1}, "tolerance"),
    ({"columns": ["sqft"], "tolerance": {"city": 0.1}}, "city"),
    ({"columns": ["sqft"], "skip": ["speling"]}, "speling"),
    ({"columns": ["sqft"], "categorical": ["zipcode"]}, "zipcode"),
])
def test_bad_configuration_is_a_user_error_with_a_hint(prof: dict[str, Any], options: dict[str, Any],
                                                        words: str) -> None:
    with pytest.raises(CheckConfigError) as caught:
        ProfileChecks(prof, **options)
    assert words in str(caught.value) and caught.value.hint


def test_not_a_profile_is_refused_with_a_hint() -> None:
    with pytest.raises(CheckConfigError) as caught:
        ProfileChecks({"sqft": 1})
    assert "ModelVersion.profile" in (caught.value.hint or "")


def test_a_column_null_in_the_whole_batch_gives_one_answer_per_row(prof: dict[str, Any]) -> None:
    frame = pl.DataFrame({"sqft": [None, None, None]})  # dtype Null: every check reduces to a literal
    assert _codes(frame, ProfileChecks(prof, columns=["sqft"])) == [["null:sqft"]] * 3
    assert _codes(frame, ProfileChecks(prof, columns=["sqft"], skip=["null"])) == [[]] * 3


def test_the_summary_renders_as_a_table(checks: ProfileChecks) -> None:
    from rich.console import Console

    frame = pl.DataFrame({"sqft": [9000, 9000, 1000, None], "baths": [1.0] * 4, "zipcode": [98001] * 4,
                          "city": ["Kent"] * 4})
    table = checks.check(frame).summary.table()
    assert table.title == "Data checks: 3 of 4 rows with violations"
    console = Console(record=True, width=100)
    console.print(table)
    rows = [line.split("│")[1:-1] for line in console.export_text().splitlines() if line.startswith("│")]
    assert [[cell.strip() for cell in row] for row in rows] == [["null", "sqft", "1", "25.0%"],
                                                               ["range", "sqft", "2", "50.0%"]]
