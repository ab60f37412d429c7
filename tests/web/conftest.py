"""Fixtures of the web tests (API, auth, security, UI pages): a populated headwater home and clients.

The home is built once per session through the real machinery (DAG files parsed by the real
discovery, runs made by the real scheduler as ``headwater dags test`` does, a model registered in
the real registry), then copied back to the SAME path before each test that asks for it, so every
test can write (trigger, clear, promote) without seeing another's changes, and absolute paths kept
in the store (DAG files, try logs) stay right.

What is in it (``WebHome`` names them):

- ``etl`` (daily, owner ``data-team``, tags ``etl``/``daily``, params with a secret): extract >>
  transform >> load; two runs: 2024-01-01 (success) and 2024-01-02 (success).
- ``flaky``: ``ok`` >> ``boom`` (fails, 1 retry: two tries with logs) >> ``after`` (upstream_failed);
  one failed run at 2024-01-01.
- ``xss_dag``: description, owner, tag and a param holding ``<script>`` payloads; not run.
- ``broken.py``: a file with a syntax error on line 3 (an import error).
- model ``house_prices``: versions 1 (approved, champion) and 2 (registered), with metrics,
  lineage pointing at an ``etl`` run, and a training profile.

Clients (Starlette's TestClient over :func:`headwater.web.app.create_app`):
``api`` sends the token (``TOKEN``) on every request; ``anon`` sends nothing; ``make_client(**kw)``
builds one over the same home with other ``create_app`` arguments (``read_only_open=True``, ...).
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from headwater.settings import Settings

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from headwater.store.sql import SqlStore

TOKEN = "test-token-0123456789abcdef"  # a test's token
SECRET_PASSWORD = "hunter2-very-secret"  # must never come back from the API

ETL = '''
from datetime import datetime

from headwater import DAG, BashOperator, PythonOperator

def _extract(**context):
    print("extracted 3 rows")
    return 3

with DAG("etl", schedule="@daily", start_date=datetime(2024, 1, 1), default_args={"owner": "data-team"},
         tags=["etl", "daily"], description="Extract, transform, load.",
         params={"rows": 10, "api_password": "SECRET",
                 "db_url": "postgresql://loader:SECRET@127.0.0.1:5432/sales"}) as dag:
    extract = PythonOperator(task_id="extract", python_callable=_extract)
    transform = BashOperator(task_id="transform", bash_command="echo transform {{ ds }}")
    load = BashOperator(task_id="load", bash_command="echo loaded")
    extract >> transform >> load
'''.replace("SECRET", SECRET_PASSWORD)

FLAKY = '''
from datetime import datetime, timedelta

from headwater import DAG, BashOperator

with DAG("flaky", schedule=None, start_date=datetime(2024, 1, 1)) as dag:
    ok = BashOperator(task_id="ok", bash_command="echo fine")
    boom = BashOperator(task_id="boom", bash_command="echo about to fail; exit 3",
                        retries=1, retry_delay=timedelta(seconds=0))
    after = BashOperator(task_id="after", bash_command="echo never")
    ok >> boom >> after
'''

XSS = '''
from datetime import datetime

from headwater import DAG, EmptyOperator

with DAG("xss_dag", schedule=None, start_date=datetime(2024, 1, 1),
         description="<script>alert('dag')</script>", default_args={"owner": "<script>alert('owner')</script>"},
         tags=["<img src=x onerror=alert(1)>"], params={"note": "<script>alert('param')</script>"}) as dag:
    EmptyOperator(task_id="t")
'''

BROKEN = "from headwater import DAG\n\ndef oops(:\n    pass\n"


@dataclass
class WebHome:
    """A populated headwater home: its settings, store and what it holds."""

    settings: Settings
    store: SqlStore

    etl_runs = ("scheduled__2024-01-01T00:00:00+00:00", "scheduled__2024-01-02T00:00:00+00:00")
    flaky_run = "test__2024-01-01T00:00:00+00:00"
    model = "house_prices"

    @property
    def dags(self) -> Path:
        return self.settings.dags_folder

    def write_dag(self, name: str, code: str) -> Path:
        """Add a DAG file (parsed on the next refresh)."""
        path = self.dags / name
        path.write_text(textwrap.dedent(code))
        return path

    def refresh(self) -> None:
        """Parse the DAG folder with the real discovery."""
        from headwater.orchestration.discovery import refresh

        refresh(self.store, self.dags, timeout=self.settings.dag_parse_timeout)

    def run_dag(self, dag_id: str, day: str, *, run_type: str = "test") -> str:
        """Run one DAG run to its end in this process with the real scheduler (as ``dags test``)."""
        return run_dag(self.settings, self.store, dag_id, day, run_type=run_type)


def run_dag(settings: Settings, store: SqlStore, dag_id: str, day: str, *, run_type: str = "test") -> str:
    """Create the run of ``dag_id`` at ``day`` and run it with the inline executor; its run id."""
    import datetime as dt

    from headwater.clock import utcnow
    from headwater.executor.inline import InlineExecutor
    from headwater.orchestration.runs import trigger
    from headwater.orchestration.scheduler import Scheduler, SchedulerOptions

    record = store.get_dag(dag_id)
    assert record is not None, dag_id
    when = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    run = trigger(store, record, utcnow(), logical_date=when, run_type=run_type)
    options = SchedulerOptions(only_runs={(dag_id, run.run_id)}, take_lease=False)
    Scheduler(store, InlineExecutor(), settings, options).run()
    return run.run_id


def _settings(home: Path) -> Settings:
    return Settings.from_env({"HEADWATER_HOME": str(home)}, parallelism=1, dag_parse_timeout=30.0)


def _register_models(settings: Settings, run_id: str) -> None:
    import numpy as np
    from sklearn.linear_model import Ridge

    from headwater.ml.artifacts import ModelArtifact
    from headwater.ml.registry_sql import open_registry

    reg = open_registry(settings)
    x = np.arange(30, dtype=float).reshape(10, 3)
    signature = {"inputs": [{"name": "rooms", "dtype": "Float64"}], "outputs": [{"name": "price", "dtype": "Float64"}]}
    for version, rmse in ((1, 1.0), (2, 0.9)):
        reg.register(
            "house_prices", ModelArtifact(Ridge(alpha=version).fit(x, x[:, 0]), {"k": version}), signature,
            {"rooms": {"count": 10, "mean": 3.5}},
            {"test": {"rmse": rmse, "r2": 0.8 + version / 100}, "baseline": {"test": {"rmse": 2.0}}},
            {"alpha": version},
            {"dag_id": "etl", "run_id": run_id, "splits": {"test": {"data_hash": "feedbeef0123", "rows": 300}}},
            "ana",
        )
    reg.promote("house_prices", 1, who="ana", reason="first model, checked by hand")
    reg.store.close()


def _build(home: Path) -> None:
    from headwater.store.sql import open_store

    settings = _settings(home)
    settings.dags_folder.mkdir(parents=True)
    (settings.dags_folder / "etl.py").write_text(ETL)
    (settings.dags_folder / "flaky.py").write_text(FLAKY)
    (settings.dags_folder / "xss.py").write_text(XSS)
    (settings.dags_folder / "broken.py").write_text(BROKEN)
    store = open_store(settings.db_url, create=True)
    try:
        WebHome(settings, store).refresh()
        for day in ("2024-01-01", "2024-01-02"):
            run_dag(settings, store, "etl", day, run_type="scheduled")
        run_dag(settings, store, "flaky", "2024-01-01")
    finally:
        store.close()
    _register_models(settings, WebHome.etl_runs[0])


@pytest.fixture(scope="session")
def _web_home_paths(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(template, live): the home is built in ``live``, kept as ``template``, restored before each test."""
    root = tmp_path_factory.mktemp("web")
    live = root / "home"
    _build(live)
    template = root / "template"
    shutil.copytree(live, template)
    return template, live


@pytest.fixture
def web_home(_web_home_paths: tuple[Path, Path]) -> Iterator[WebHome]:
    """A fresh copy of the populated home (see the module docstring), at the same path every time."""
    from headwater.store.sql import open_store

    template, live = _web_home_paths
    shutil.rmtree(live, ignore_errors=True)
    shutil.copytree(template, live)
    settings = _settings(live)
    store = open_store(settings.db_url)
    yield WebHome(settings, store)
    store.close()


@pytest.fixture
def make_client(web_home: WebHome) -> Iterator[Callable[..., TestClient]]:
    """``make_client(token=..., read_only_open=..., headers=...)``: a TestClient over the home's app.

    The token defaults to ``TOKEN``; the client sends no credentials unless ``headers`` says so.
    """
    from fastapi.testclient import TestClient

    from headwater.web.app import create_app

    made: list[TestClient] = []

    def make(*, headers: dict[str, str] | None = None, **kwargs: Any) -> TestClient:
        kwargs.setdefault("token", TOKEN)
        app = create_app(web_home.settings, **kwargs)
        client = TestClient(app, base_url="http://127.0.0.1", headers=headers or {})
        client.__enter__()
        made.append(client)
        return client

    yield make
    for client in made:
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_client: Callable[..., TestClient]) -> TestClient:
    """A client that sends ``Authorization: Bearer TOKEN`` on every request."""
    return make_client(headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture
def anon(make_client: Callable[..., TestClient]) -> TestClient:
    """A client with no credentials (reads are closed: the app is made without ``read_only_open``)."""
    return make_client()
