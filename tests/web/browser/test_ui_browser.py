"""The UI in a real browser: log in, trigger a DAG and watch its run turn green in the grid, read a
task's log, promote a model through the confirmation dialog. Screenshots in ``artifacts/``."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.web.browser.conftest import ARTIFACTS, Server
from tests.web.conftest import TOKEN
from tests.web.test_ui_streams import _run_scorer as run_scorer
from tests.web.test_ui_streams import _snapshot as snapshot

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"
#: How long a triggered run may take to finish (3 tasks on one worker process).
RUN_TIMEOUT_MS = 120_000


def shot(page: Any, name: str, *, full: bool = False) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full)
    return path


def log_in(page: Any, server: Server) -> None:
    page.goto(f"{server.url}/dags")
    assert "/login" in page.url  # pages need a login
    page.fill("input[name=name]", "ana")
    page.fill("input[name=token]", TOKEN)
    shot(page, "01-login")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dags$"))


def test_trigger_watch_log_promote(page: Any, server: Server) -> None:
    log_in(page, server)
    rows = page.locator("tr[data-dag-id]")
    assert rows.count() == 5  # etl, flaky, house_prices_training, slow_log, xss_dag
    assert page.locator("#import-errors").get_by_text("broken.py").is_visible()
    # times are shown in the browser's zone (Europe/Paris), UTC on hover
    first_time = page.locator("time[datetime]").first
    assert "UTC" in (first_time.get_attribute("title") or "")
    assert page.locator("#tzname").inner_text() == "Europe/Paris"
    dags_png = shot(page, "02-dags")

    # trigger etl with a param from its form
    row = page.locator('tr[data-dag-id="etl"]')
    row.locator("summary").click()
    row.locator('input[name="param.rows"]').fill("5")
    shot(page, "02b-trigger-form")
    row.get_by_role("button", name="Trigger run").click()
    page.wait_for_url(re.compile(r"/dags/etl/grid"))
    flash = page.locator(".flash.info").inner_text()
    run_id = re.search(r"queued run (\S+) of etl", flash).group(1)  # type: ignore[union-attr]
    bar = page.locator(f'.runbar a[data-run-id="{run_id}"]')
    assert bar.count() == 1
    # the grid refreshes itself (htmx, every 2 s) until the scheduler has run it: no reload here
    page.wait_for_selector(f'.runbar a[data-run-id="{run_id}"][data-state="success"]', timeout=RUN_TIMEOUT_MS)
    # the run's column: where its bar is in the header
    index = page.evaluate("(rid) => document.querySelector(`.runbar a[data-run-id='${rid}']`).closest('th').cellIndex",
                          run_id)
    column = page.locator(f"table[data-dag-id] tbody tr td:nth-child({index + 1}) a.cell")
    assert column.count() == 3
    assert all(column.nth(i).get_attribute("data-state") == "success" for i in range(3))
    shot(page, "03-etl-grid-after-trigger")

    # the task's log, from its grid cell
    column.first.click()
    page.wait_for_url(re.compile(r"/dags/etl/tasks/extract"))
    assert "extracted 3 rows" in page.locator("#log").inner_text()
    assert page.locator("#ti-state").inner_text().strip() == "success"
    shot(page, "04-task-log")

    # a log streamed while its try runs: open the task before it has finished, watch it grow, no reload
    page.goto(f"{server.url}/dags/slow_log/grid")
    page.locator("summary", has_text="Trigger").click()
    page.get_by_role("button", name="Trigger run").click()
    page.wait_for_selector(".flash.info")
    queued = re.search(r"queued run (\S+) of slow_log", page.locator(".flash.info").inner_text())
    assert queued is not None
    slow_run = queued.group(1)
    page.goto(f"{server.url}/dags/slow_log/tasks/count?run_id={quote(slow_run, safe='')}")
    assert "counting 12" not in page.locator("#log").inner_text()  # opened while the try still runs
    page.wait_for_function("document.getElementById('log').innerText.includes('counting 3')", timeout=RUN_TIMEOUT_MS)
    shot(page, "04b-log-streaming")
    page.wait_for_function("document.getElementById('log').innerText.includes('counting 12')", timeout=RUN_TIMEOUT_MS)
    page.wait_for_function("document.getElementById('ti-state').innerText.trim() === 'success'", timeout=RUN_TIMEOUT_MS)
    assert page.locator("#log-tail").count() == 0  # polling stopped

    # a realistic grid and graph for the README
    page.goto(f"{server.url}/dags/house_prices_training/grid")
    assert page.locator('.runbar a[data-state="failed"]').count() == 2
    grid_png = shot(page, "05-training-grid")
    page.goto(f"{server.url}/dags/house_prices_training/graph?run_id=scheduled__2024-03-09T00%3A00%3A00%2B00%3A00")
    assert page.locator('.node[data-task-id="validate_data"][data-state="failed"]').count() == 1
    assert page.locator('.group[data-group-id="train"]').count() == 1
    shot(page, "06-training-graph")
    page.goto(f"{server.url}/dags/house_prices_training/gantt")
    shot(page, "07-training-gantt")

    # promote model v2: a reason, then the confirmation dialog
    page.goto(f"{server.url}/models/house_prices")
    v2 = page.locator('tr[data-version="2"]')
    v2.locator("input[name=reason]").fill("lower test rmse, checked the residuals")
    v2.get_by_role("button", name="Promote").click()
    dialog = page.locator("dialog#confirm")
    assert dialog.is_visible()
    shot(page, "08-promote-confirm")
    dialog.get_by_role("button", name="Confirm").click()
    page.wait_for_selector(".flash.info")
    assert "v2 promoted" in page.locator(".flash.info").inner_text()
    assert "champion" in page.locator('tr[data-version="2"]').inner_text()
    assert "lower test rmse" in page.locator("#alias-history").inner_text()
    shot(page, "09-model-promoted", full=True)
    page.goto(f"{server.url}/models/house_prices?version=3")
    assert page.locator("#profile .hist").count() == 5
    shot(page, "09b-model-profile", full=True)

    # streams: a real app run on the embedded log (with a dead letter) and a status snapshot
    run_scorer(server.home)
    snapshot(server.home)
    page.goto(f"{server.url}/streams")
    assert "scorer" in page.locator("#apps").inner_text()
    page.wait_for_function("window.hwStreamPoints >= 3", timeout=30_000)
    shot(page, "10-streams", full=True)

    # The README's pictures are refreshed on request only, so a test run leaves the work tree clean:
    # HEADWATER_UPDATE_SCREENSHOTS=1 pytest tests/web/browser
    if os.environ.get("HEADWATER_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(dags_png, DOCS / "ui-dags.png")
        shutil.copy(grid_png, DOCS / "ui-dag-grid.png")
