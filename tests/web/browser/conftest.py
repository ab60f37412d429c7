"""Browser tests: the real ``headwater web`` server and a scheduler as subprocesses on a populated
home, driven by Playwright in Debian's headless Chromium (``/usr/bin/chromium``, installed by
``make browser-deps``; never ``playwright install``). Screenshots go to ``artifacts/`` (gitignored).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import TOKEN, WebHome

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
START_TIMEOUT = 60.0

#: A DAG that looks like a real training pipeline, so the screenshots show a realistic grid and graph.
TRAINING = '''
from datetime import datetime

from headwater import DAG, PythonOperator, TaskGroup

def _step(name):
    def run(**context):
        if name == "validate_data" and context["ds"] in ("2024-03-04", "2024-03-09"):
            raise ValueError("12 rows have a negative sqft")
        print(f"{name} done for {context['ds']}")
    return run

def step(name):
    return PythonOperator(task_id=name, python_callable=_step(name))

with DAG("house_prices_training", schedule="@daily", start_date=datetime(2024, 3, 1),
         default_args={"owner": "ml-team"}, tags=["ml", "house-prices"],
         description="Features, training and evaluation of the house-price model.",
         params={"model": "lightgbm", "max_rows": 100000}) as dag:
    with TaskGroup("extract") as extract:
        step("sales"), step("listings")
    validate, features, split = step("validate_data"), step("build_features"), step("split")
    with TaskGroup("train") as train:
        step("lightgbm"), step("ridge")
    evaluate, register = step("evaluate"), step("register_model")
    extract >> validate >> features >> split >> train >> evaluate >> register
'''


#: A task that writes its log over a few seconds, to watch the log stream into the page.
SLOW_LOG = '''
from datetime import datetime

from headwater import DAG, BashOperator

with DAG("slow_log", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    BashOperator(task_id="count", bash_command="for i in $(seq 1 12); do echo counting $i; sleep 0.5; done")
'''


def register_v3(home: WebHome, run_id: str) -> None:
    """A third version of house_prices with a real training profile (skewed prices, categories)."""
    import numpy as np
    import polars as pl
    from sklearn.linear_model import Ridge

    from headwater.ml.artifacts import ModelArtifact
    from headwater.ml.profile import profile
    from headwater.ml.registry_sql import SqlModelRegistry

    rng = np.random.default_rng(7)
    n = 5000
    frame = pl.DataFrame({
        "price": rng.lognormal(13.0, 0.45, n),
        "sqft_living": rng.normal(2100, 650, n).clip(400, None),
        "bedrooms": rng.choice([1, 2, 3, 3, 3, 4, 4, 5, 6], n),
        "zipcode": rng.choice(["98103", "98052", "98115", "98006", "98004", "98033"], n),
        "yr_built": rng.integers(1900, 2015, n),
    })
    x = np.arange(30, dtype=float).reshape(10, 3)
    reg = SqlModelRegistry(home.store, home.settings.home / "models")
    reg.register(
        "house_prices", ModelArtifact(Ridge(alpha=3).fit(x, x[:, 0]), {"k": 3}),
        {"inputs": [{"name": "sqft_living", "dtype": "Float64"}], "outputs": [{"name": "price", "dtype": "Float64"}]},
        profile(frame), {"test": {"rmse": 0.95, "r2": 0.83, "mae": 0.61}, "validation": {"rmse": 0.93, "r2": 0.84}},
        {"alpha": 3, "learning_rate": 0.05},
        {"dag_id": "house_prices_training", "run_id": run_id, "task_id": "register_model",
         "splits": {"test": {"data_hash": "9c2e41aa07", "rows": 1000}}, "feature_source_hash": "4f1d0c2b"},
        "ml-bot",
    )


def chromium_or_skip() -> str:
    """The Chromium binary, or a skip that says how to get it."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    pytest.skip(f"{CHROMIUM} is missing and could not be installed: run `make browser-deps` "
                "(apt-get install chromium chromium-driver, as root)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """The running ``headwater web`` (and scheduler) over ``home``."""

    url: str
    home: WebHome
    web: subprocess.Popen[bytes]
    scheduler: subprocess.Popen[bytes] | None
    logs: Path


def _env(home: WebHome) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HEADWATER_HOME": str(home.settings.home), "HEADWATER_API_TOKEN": TOKEN,
                "HEADWATER_PARALLELISM": "1"})
    return env


def _wait_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"headwater web exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/v1/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"headwater web did not answer within {START_TIMEOUT:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def server(web_home: WebHome, tmp_path: Path) -> Iterator[Server]:
    """``headwater web`` on a free port and ``headwater scheduler`` on the populated home, plus a
    training DAG with two weeks of runs (two of them failed) for realistic pictures."""
    web_home.write_dag("training.py", TRAINING)
    web_home.write_dag("slow_log.py", SLOW_LOG)
    web_home.refresh()
    for day in range(1, 15):  # two of them fail in validate_data: part of the picture
        last = web_home.run_dag("house_prices_training", f"2024-03-{day:02d}", run_type="scheduled")
    register_v3(web_home, last)
    env = _env(web_home)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    web_log, sched_log = tmp_path / "web.log", tmp_path / "scheduler.log"
    with web_log.open("wb") as out:
        web = subprocess.Popen([sys.executable, "-m", "headwater", "web", "--port", str(port)], env=env,
                               stdout=out, stderr=subprocess.STDOUT)
    scheduler = None
    try:
        _wait_up(url, web, web_log)
        with sched_log.open("wb") as out:
            scheduler = subprocess.Popen([sys.executable, "-m", "headwater", "scheduler", "-p", "1"], env=env,
                                         stdout=out, stderr=subprocess.STDOUT)
        yield Server(url, web_home, web, scheduler, tmp_path)
    finally:
        _stop(scheduler)
        _stop(web)
        for log in (web_log, sched_log):
            if log.exists():
                ARTIFACTS.mkdir(exist_ok=True)
                shutil.copy(log, ARTIFACTS / log.name)


@pytest.fixture
def page(server: Server) -> Iterator[Any]:
    """A Playwright page in headless Chromium, 1440x900, in a non-UTC time zone (local times show)."""
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id="Europe/Paris",
                                      device_scale_factor=1)
        pg = context.new_page()
        pg.set_default_timeout(15_000)
        try:
            yield pg
        finally:
            context.close()
            browser.close()
