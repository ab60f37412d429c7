"""REST serving: a real uvicorn server on 127.0.0.1 scoring a registered house-price model."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx  # the dev extra installs httpx2 (Starlette's TestClient), not httpx
import numpy as np
import orjson
import polars as pl
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from headwater.ml.registry_sql import SqlModelRegistry, open_registry
from headwater.ml.scoring import ScorerSetupError
from headwater.ml.serving import create_app
from headwater.ml.train import TrainResult, train
from headwater.settings import Settings
from tests.ml.house_features import synthetic_houses

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:websockets.*")


def _train(iterations: int, seed: int) -> TrainResult:
    from tests.ml.house_features import house_features

    return train(synthetic_houses(400, seed=seed), target="price", features=house_features(),
                 estimator=HistGradientBoostingRegressor(max_iter=iterations, random_state=seed), seed=seed,
                 importance_sample=20, importance_repeats=1, target_transform="log1p")


@pytest.fixture(scope="module")
def models() -> tuple[TrainResult, TrainResult]:
    """Two models of the same features whose predictions differ."""
    return _train(10, seed=1), _train(25, seed=2)


def _home_registry(root: Path, models: tuple[TrainResult, TrainResult]) -> tuple[Settings, SqlModelRegistry]:
    settings = Settings.from_env({"HEADWATER_HOME": str(root)})
    registry = open_registry(settings)
    for model in models:
        model.register(registry, "houses", author="test")
    registry.promote("houses", 1, who="test", reason="first")
    registry.approve("houses", 2, who="test", reason="better")
    return settings, registry


class Server:
    """A uvicorn server in a thread, on a port the OS picked on 127.0.0.1."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        while not self.server.started:  # bounded by the test timeout
            if not self.thread.is_alive():
                raise RuntimeError("the server thread ended before it started")
            self.thread.join(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,
           models: tuple[TrainResult, TrainResult]) -> Iterator[tuple[httpx.Client, SqlModelRegistry]]:
    _, registry = _home_registry(tmp_path_factory.mktemp("home"), models)
    app = create_app("houses@champion", registry=registry, reload_interval=0)
    with Server(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client, registry


def _records(n: int, seed: int) -> list[dict[str, Any]]:
    return synthetic_houses(n, seed=seed).drop("price").to_dicts()


def test_one_record_and_a_list_are_scored_as_the_model_scores_the_frame(
    served: tuple[httpx.Client, SqlModelRegistry], models: tuple[TrainResult, TrainResult]
) -> None:
    client, _ = served
    records = _records(50, seed=7)
    expected = models[0].predict(pl.DataFrame(records))

    one = client.post("/predict", content=orjson.dumps(records[3]))
    many = client.post("/predict", content=orjson.dumps(records))

    assert one.status_code == 200, one.text
    assert one.json() == {"prediction": float(expected[3]), "model_version": "houses:1"}
    assert many.status_code == 200, many.text
    body = many.json()
    assert isinstance(body, list) and len(body) == 50
    np.testing.assert_array_equal([r["prediction"] for r in body], expected)
    assert {r["model_version"] for r in body} == {"houses:1"}


def test_json_numbers_as_text_and_whole_floats_are_accepted(served: tuple[httpx.Client, SqlModelRegistry],
                                                            models: tuple[TrainResult, TrainResult]) -> None:
    client, _ = served
    record = _records(1, seed=8)[0]
    loose = {**record, "bedrooms": float(record["bedrooms"]), "sqft_living": str(record["sqft_living"]),
             "bathrooms": None, "extra_field": {"ignored": True}}
    got = client.post("/predict", content=orjson.dumps(loose))
    assert got.status_code == 200, got.text
    assert got.json()["prediction"] == float(models[0].predict(pl.DataFrame([{**record, "bathrooms": None}]))[0])


def _errors(response: httpx.Response) -> list[tuple[Any, Any, str]]:
    assert response.status_code == 422, response.text
    return [(d["row"], d["field"], d["msg"]) for d in response.json()["detail"]]


def test_records_that_do_not_fit_get_a_422_naming_row_and_field(
    served: tuple[httpx.Client, SqlModelRegistry]
) -> None:
    client, _ = served
    good = _records(3, seed=9)
    missing = {k: v for k, v in good[0].items() if k != "sqft_lot"}
    wrong_type = {**good[1], "lat": {"deg": 47}}
    unparseable = {**good[2], "bedrooms": "three"}
    required_null = {**good[2], "sqft_living": None}
    boolean = {**good[0], "floors": True}

    assert _errors(client.post("/predict", content=orjson.dumps(missing))) == [
        (0, "sqft_lot", "field 'sqft_lot' is missing (Int64; send null if unknown)")]
    errors = _errors(client.post("/predict", content=orjson.dumps([good[0], wrong_type, unparseable,
                                                                    required_null, boolean])))
    assert [(row, field) for row, field, _ in errors] == [(1, "lat"), (2, "bedrooms"), (3, "sqft_living"),
                                                          (4, "floors")]
    assert "expected Float64, got an object" in errors[0][2]
    assert "got three" in errors[1][2]
    assert "required" in errors[2][2]
    assert "expected Float64, got true" in errors[3][2]


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "the body is not JSON"),
    (b"[]", "the body is an empty list"),
    (b"42", "the body is a JSON int"),
    (b'[{"a": 1}, 7]', "record 1 is 7, expected an object"),
])
def test_bodies_that_are_not_records_get_a_422(served: tuple[httpx.Client, SqlModelRegistry], body: bytes,
                                               message: str) -> None:
    client, _ = served
    errors = _errors(client.post("/predict", content=body))
    assert any(message in msg for _, _, msg in errors), errors


def test_health_and_model_describe_the_version_in_use(served: tuple[httpx.Client, SqlModelRegistry]) -> None:
    client, _ = served
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model_ref": "houses@champion", "model_version": "houses:1"}
    model = client.get("/model").json()
    assert model["model_version"] == "houses:1"
    assert model["aliases"] == {"champion": 1}
    assert [f["name"] for f in model["signature"]["features"]][:2] == ["living_per_lot", "log_sqft_living"]
    assert model["metrics"]["test"]["rmse"] > 0
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "process_cpu_seconds_total" in metrics.text


def test_a_reference_that_does_not_resolve_fails_before_serving(tmp_path: Path,
                                                                models: tuple[TrainResult, TrainResult]) -> None:
    _, registry = _home_registry(tmp_path / "home", models)
    with pytest.raises(Exception, match="no alias 'production'"):
        create_app("houses@production", registry=registry)
    with pytest.raises(ScorerSetupError, match="reload_interval"):
        create_app("houses@champion", registry=registry, reload_interval=-1)


def test_hot_reload_switches_a_running_server_without_failing_a_request(
    tmp_path: Path, models: tuple[TrainResult, TrainResult]
) -> None:
    _, registry = _home_registry(tmp_path / "home", models)
    records = _records(20, seed=11)
    body = orjson.dumps(records)
    expected = {f"houses:{i + 1}": m.predict(pl.DataFrame(records)) for i, m in enumerate(models)}
    app = create_app("houses@champion", registry=registry, reload_interval=0.05)
    seen: list[str] = []
    with Server(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        promoted = False
        while not seen or seen[-1] != "houses:2":  # bounded by the test timeout
            response = client.post("/predict", content=body)
            assert response.status_code == 200, response.text
            answer = response.json()
            versions = {r["model_version"] for r in answer}
            assert len(versions) == 1  # one request, one model
            version = versions.pop()
            np.testing.assert_array_equal([r["prediction"] for r in answer], expected[version])
            seen.append(version)
            if not promoted and len(seen) >= 3:
                registry.promote("houses", 2, who="test", reason="better")
                promoted = True
        assert client.get("/health").json()["model_version"] == "houses:2"
        assert client.get("/model").json()["aliases"] == {"champion": 2}
    switch = seen.index("houses:2")
    assert set(seen[:switch]) == {"houses:1"} and set(seen[switch:]) == {"houses:2"}
    assert switch >= 3


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_headwater_serve_through_the_real_cli(tmp_path: Path, models: tuple[TrainResult, TrainResult],
                                              workers: int) -> None:
    settings, _ = _home_registry(tmp_path / "home", models)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, HEADWATER_HOME=str(settings.home), COLUMNS="200")
    command = [sys.executable, "-m", "headwater", "serve", "houses@champion", "--port", str(port),
               "--workers", str(workers)]
    with subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        _talk_to(proc, port)


def _talk_to(proc: subprocess.Popen[str], port: int) -> None:
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()  # printed once the model is loaded, before the server binds
        assert "serving houses@champion (houses:1" in banner, banner + (proc.stderr.read() if proc.stderr else "")
        record = _records(1, seed=3)[0]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            response = None
            while response is None:  # bounded by the test timeout; fails fast if the server died
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                with contextlib.suppress(httpx.ConnectError):
                    response = client.post("/predict", content=orjson.dumps(record))
            assert response.status_code == 200
            assert response.json()["model_version"] == "houses:1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_reports_a_missing_model_in_one_line(tmp_path: Path) -> None:
    env = dict(os.environ, HEADWATER_HOME=str(tmp_path / "home"))
    done = subprocess.run([sys.executable, "-m", "headwater", "serve", "nope@champion"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("error:") and "Traceback" not in done.stderr
