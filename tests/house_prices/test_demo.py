"""``make demo``'s script on the sample: everything priced, every process stopped, reruns count only their own run.

The sample holds 158 new listings, fewer than the app's default drift window (1,000), so the
demo runs here with ``--drift-window 150 --drift-every 50`` (a numeric feature's 8 PSI bins
are judged from 147 records on, see headwater.quality.drift): with the same settings the
unshifted listings raise no alert and ``--shift 1.5`` raises one.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from house_prices import scenario
from house_prices.stream_app import APP, SOURCE_TOPIC

from .conftest import EXAMPLES, SAMPLE

pytestmark = pytest.mark.slow

DRIFT = ("--drift-window", "150", "--drift-every", "50")


def command(home: Path, *args: str) -> list[str]:
    return [sys.executable, str(EXAMPLES / "demo.py"), "--home", str(home), "--source", str(SAMPLE), *DRIFT, *args]


def demo(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(home, "--rate", "5000/s", *args), capture_output=True, text=True, timeout=240,
                          check=False)


def flat(text: str) -> str:
    return " ".join(text.split())


@dataclass
class DemoHome:
    home: Path
    first: subprocess.CompletedProcess[str]
    listings: int


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoHome]:
    """A home where the demo ran once on the sample."""
    home = tmp_path_factory.mktemp("demo") / "home"
    first = demo(home)
    listings = pl.read_parquet(next((home / "house_prices" / "prepared").glob("source=*")) / "listings.parquet")
    yield DemoHome(home, first, listings.height)


def priced_line(n: int) -> str:
    return f"{n:,} listings priced ({n:,} by house_prices:1)"


def test_the_demo_prices_every_listing_raises_no_alert_and_stops_its_app(demo_home: DemoHome) -> None:
    first, n = demo_home.first, demo_home.listings
    assert first.returncode == 0, first.stdout + first.stderr
    out = flat(first.stdout)
    assert priced_line(n) in out, out
    assert "trained house_prices:1: approved" in out
    assert re.search(r"\d+ quarantined to", out)
    assert "drift alerts to houses.alerts: 0" in out  # judged once the window holds 150 (see the shift test)
    assert "demo done" in out
    # Scraped from the app's Prometheus endpoint before it stopped.
    assert f'headwater_stream_records_in_total{{app="house_pricing",topic="houses"}} {n}.0' in out
    # The app was stopped by SIGTERM and drained: its last line is its own summary.
    assert "stream app house_pricing stopped" in (demo_home.home / "house_pricing.log").read_text()


def test_a_rerun_after_a_replay_interrupted_by_ctrl_c_counts_only_its_own_listings(demo_home: DemoHome) -> None:
    home, n = demo_home.home, demo_home.listings
    # Ctrl-C in a terminal: SIGINT to the demo's process group (the demo and its replay) mid-replay.
    interrupted = subprocess.Popen(command(home, "--rate", "20/s"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
    try:
        broker = scenario.Home(home).broker()
        before = scenario.end_offset(broker, SOURCE_TOPIC)
        deadline = time.monotonic() + 120
        while scenario.end_offset(broker, SOURCE_TOPIC) == before:
            assert interrupted.poll() is None and time.monotonic() < deadline, "the replay never started"
            time.sleep(0.05)
        os.killpg(interrupted.pid, signal.SIGINT)
        out, _ = interrupted.communicate(timeout=60)
    finally:
        if interrupted.poll() is None:
            os.killpg(interrupted.pid, signal.SIGKILL)
    assert interrupted.returncode == 130, out
    assert "interrupted" in out
    assert scenario.end_offset(broker, SOURCE_TOPIC) - before < n  # it really stopped mid-replay
    # What such a run can leave, for certain: listings in houses that no app read (replayed, by
    # the demo's own command, while no app runs).
    part = home / "some_listings.parquet"
    prepared = next((home / "house_prices" / "prepared").glob("source=*"))
    pl.read_parquet(prepared / "listings.parquet").head(20).write_parquet(part)
    scenario.Home(home).cli("stream", "replay", str(part), "--topic", SOURCE_TOPIC, "--key", "zipcode")
    lag = sum(p.lag for p in broker.group_lag(APP, [SOURCE_TOPIC]))
    assert lag >= 20

    rerun = demo(home)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    again = flat(rerun.stdout)
    assert f"skipped {lag:,} listings an earlier, interrupted run replayed" in again, again
    assert priced_line(n) in again, again  # this run's listings, not one more
    assert f"{n:,} records in" in again
    assert "trained nothing new" in again
    assert re.search(r"ingest\s+success\s+1\s+\S+ ms\s+already complete", rerun.stdout), rerun.stdout
    assert "drift alerts to houses.alerts: 0" in again


def test_the_shift_option_raises_a_drift_alert_named_in_the_summary(demo_home: DemoHome) -> None:
    shifted = demo(demo_home.home, "--shift", "1.5")
    assert shifted.returncode == 0, shifted.stdout + shifted.stderr
    out = flat(shifted.stdout)
    assert priced_line(demo_home.listings) in out, out
    found = re.search(r"drift alerts to houses\.alerts: (\d+)", out)
    assert found and int(found.group(1)) >= 1, out
    assert re.search(r"sqft_living: psi \d+\.\d+ > 0\.2 over the last \d+ records", out), out
    assert "(none: the listings look like" not in out
