"""Splits: every row exactly once, stable per seed, time order respected, clear errors."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.ml.split import SplitError, Splits, frame_hash, split


def _frame(n: int) -> pl.DataFrame:
    return pl.DataFrame({"id": list(range(n)), "x": [i * 0.5 for i in range(n)]})


def _ids(part: pl.DataFrame) -> list[int]:
    return part.get_column("id").to_list()


def test_default_split_is_70_20_10_and_keeps_row_order() -> None:
    parts = split(_frame(1000), seed=7)
    assert parts.sizes == {"train": 700, "validation": 200, "test": 100}
    for part in (parts.train, parts.validation, parts.test):
        assert _ids(part) == sorted(_ids(part))
    assert parts.describe() == {
        "method": "random",
        "fractions": [0.7, 0.2, 0.1],
        "seed": 7,
        "time_column": None,
        "sizes": {"train": 700, "validation": 200, "test": 100},
        "boundaries": {},
    }


def test_same_seed_same_split_other_seed_other_split() -> None:
    a, b, c = split(_frame(500), seed=1), split(_frame(500), seed=1), split(_frame(500), seed=2)
    assert _ids(a.train) == _ids(b.train) and _ids(a.test) == _ids(b.test)
    assert _ids(a.train) != _ids(c.train)


def test_a_pinned_split_does_not_change_across_versions() -> None:
    # PCG64 with a given seed is stable across NumPy versions: a stored model's split can be rebuilt.
    parts = split(_frame(10), seed=0, fractions=(0.5, 0.3, 0.2))
    assert (_ids(parts.train), _ids(parts.validation), _ids(parts.test)) == ([2, 3, 4, 6, 7], [0, 5, 9], [1, 8])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=300),
    train=st.integers(min_value=1, max_value=10),
    validation=st.integers(min_value=0, max_value=10),
    test=st.integers(min_value=0, max_value=10),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_every_row_lands_in_exactly_one_part(n: int, train: int, validation: int, test: int, seed: int) -> None:
    total = train + validation + test
    parts = split(_frame(n), fractions=(train / total, validation / total, test / total), seed=seed)
    ids = _ids(parts.train) + _ids(parts.validation) + _ids(parts.test)
    assert sorted(ids) == list(range(n))
    assert abs(parts.sizes["train"] - n * train / total) <= 1


def test_time_split_trains_on_the_oldest_rows() -> None:
    days = [dt.date(2014, 1, 1) + dt.timedelta(days=i) for i in range(100)]
    frame = pl.DataFrame({"id": list(range(100)), "day": list(reversed(days))})  # newest first
    parts = split(frame, time_column="day")
    assert parts.sizes == {"train": 70, "validation": 20, "test": 10}
    assert parts.train.get_column("day").max() < parts.validation.get_column("day").min()
    assert parts.validation.get_column("day").max() < parts.test.get_column("day").min()
    assert parts.boundaries == {"train_end": "2014-03-11", "validation_end": "2014-03-31"}
    assert parts.describe()["method"] == "time"


def test_time_split_never_cuts_between_equal_times() -> None:
    # 10 rows per day: a 0.75 cut would fall inside a day.
    frame = pl.DataFrame({"id": list(range(40)), "t": [i // 10 for i in range(40)]})
    parts = split(frame, time_column="t", fractions=(0.75, 0.25, 0.0))
    assert parts.sizes == {"train": 30, "validation": 10, "test": 0}
    assert set(parts.train.get_column("t")).isdisjoint(set(parts.validation.get_column("t")))
    assert parts.boundaries == {"train_end": 2, "validation_end": 3}


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ((0.7, 0.2), "three numbers"),
        ((0.7, 0.2, 0.2), "add up to 1"),
        ((0.0, 0.5, 0.5), "train fraction must be > 0"),
        ((1.2, -0.1, -0.1), ">= 0"),
        ((float("nan"), 0.5, 0.5), "finite"),
        (("a", 0.5, 0.5), "numbers"),
    ],
)
def test_bad_fractions(fractions: tuple, message: str) -> None:
    with pytest.raises(SplitError, match=message):
        split(_frame(10), fractions=fractions)


def test_bad_time_columns_and_empty_frames() -> None:
    with pytest.raises(SplitError, match="not a column") as missing:
        split(_frame(10), time_column="when")
    assert missing.value.hint is not None and "id, x" in missing.value.hint
    text = pl.DataFrame({"d": ["2014-01-01", "2014-01-02"]})
    with pytest.raises(SplitError, match="dtype String") as wrong:
        split(text, time_column="d")
    assert wrong.value.hint is not None and "str.to_date" in wrong.value.hint
    with pytest.raises(SplitError, match="1 null"):
        split(pl.DataFrame({"d": [dt.date(2014, 1, 1), None]}), time_column="d")
    with pytest.raises(SplitError, match="empty frame"):
        split(_frame(0))


def test_splits_is_frozen() -> None:
    parts = split(_frame(10))
    assert isinstance(parts, Splits)
    with pytest.raises(AttributeError):
        parts.train = parts.test  # type: ignore[misc]


def test_frame_hash_depends_on_values_names_and_types_not_on_chunks() -> None:
    frame = pl.DataFrame(
        {
            "i": [1, None, 3],
            "s": ["x", None, ""],
            "f": [1.5, float("nan"), None],
            "d": [dt.date(2014, 1, 1), None, dt.date(2015, 1, 1)],
            "b": [True, None, False],
            "c": pl.Series(["u", "v", None], dtype=pl.Categorical),
            "l": [[1], [2, 3], None],
        }
    )
    digest = frame_hash(frame)
    assert digest.startswith("sha256:")
    assert frame_hash(pl.concat([frame.head(1), frame.tail(2)], rechunk=False)) == digest
    assert frame_hash(frame.with_columns(pl.col("s").fill_null(""))) != digest  # null differs from ""
    assert frame_hash(frame.rename({"i": "j"})) != digest
    assert frame_hash(frame.with_columns(pl.col("i").cast(pl.Int32))) != digest
    assert frame_hash(frame.with_columns(pl.col("l").list.reverse())) != digest
    assert frame_hash(frame.reverse()) != digest
    # text boundaries count: ["ab", "c"] is not ["a", "bc"]
    assert frame_hash(pl.DataFrame({"s": ["ab", "c"]})) != frame_hash(pl.DataFrame({"s": ["a", "bc"]}))


def test_data_hashes_per_part() -> None:
    parts = split(_frame(100), seed=4)
    hashes = parts.data_hashes()
    assert hashes["test"] == {"data_hash": frame_hash(parts.test), "rows": 10}
    assert split(_frame(100), seed=4).data_hashes() == hashes
    assert split(_frame(100), seed=5).data_hashes()["test"] != hashes["test"]
