"""The README's streaming example, as a user runs it: replay a CSV, run the app, read the output."""

from __future__ import annotations

import csv
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.stream.clitools import StreamHome

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "streaming" / "enrich.py"

pytestmark = pytest.mark.slow


def test_replay_then_enrich(tmp_path: Path) -> None:
    hw = StreamHome(tmp_path)
    shutil.copy(EXAMPLE, tmp_path / "enrich.py")
    rows = [{"id": i, "zipcode": 98001 + i % 3, "price": 100_000 + i, "sqft_living": 0 if i % 4 == 0 else 1000}
            for i in range(400)]
    with (tmp_path / "listings.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for args in (["topics", "create", "listings", "-p", "2"], ["topics", "create", "listings.enriched", "-p", "2"],
                 ["topics", "create", "enrich.dlq"],
                 ["stream", "replay", "listings.csv", "--topic", "listings", "--key", "zipcode"]):
        hw.cli(*args, check=True)
    app = hw.popen("stream", "run", "enrich:app")
    expected = [r for r in rows if r["sqft_living"] > 0]
    deadline = time.monotonic() + 60
    while len(hw.records("listings.enriched")) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.2)
    app.send_signal(signal.SIGTERM)
    out, _ = app.communicate(timeout=30)
    assert app.returncode == 0, out
    got = hw.records("listings.enriched")
    assert sorted(v["id"] for _, _, _, v in got) == [r["id"] for r in expected]
    for _, _, key, value in got:
        assert abs(value["price_per_sqft"] - value["price"] / value["sqft_living"]) <= 0.005 + 1e-9
        assert key == str(value["zipcode"]).encode()  # the key travels with the record
    assert "0 dead-lettered" in out
