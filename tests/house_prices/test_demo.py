"""``make demo``'s script on the sample, twice: everything priced, every process stopped, the rerun trains nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from .conftest import EXAMPLES, SAMPLE

pytestmark = pytest.mark.slow


def demo(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / "demo.py"), "--home", str(home), "--source", str(SAMPLE),
                           "--rate", "5000/s", *args], capture_output=True, text=True, timeout=240, check=False)


def test_the_demo_prices_every_listing_stops_its_app_and_reruns_without_training(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    first = demo(home)
    assert first.returncode == 0, first.stdout + first.stderr
    out = " ".join(first.stdout.split())
    listings = pl.read_parquet(next((home / "house_prices" / "prepared").glob("source=*")) / "listings.parquet")
    assert f"{listings.height:,} listings priced ({listings.height:,} by house_prices:1)" in out, out
    assert "trained house_prices:1: approved" in out
    assert re.search(r"\d+ quarantined to", out)
    assert "demo done" in out
    # Scraped from the app's Prometheus endpoint before it stopped.
    assert f'headwater_stream_records_in_total{{app="house_pricing",topic="houses"}} {listings.height}.0' in out
    # The app was stopped by SIGTERM and drained: its last line is its own summary.
    assert "stream app house_pricing stopped" in (home / "house_pricing.log").read_text()

    second = demo(home)
    assert second.returncode == 0, second.stdout + second.stderr
    again = " ".join(second.stdout.split())
    assert "trained nothing new" in again
    assert re.search(r"ingest\s+success\s+1\s+\S+ ms\s+already complete", second.stdout), second.stdout
    # Only this run's listings are counted: the app resumed from its committed offsets.
    assert f"{listings.height:,} listings priced" in again, again
