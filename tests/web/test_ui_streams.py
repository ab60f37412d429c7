"""The streams page over a real embedded log (an app run on it, with dead letters) and a status
snapshot in the monitoring format: apps, topics, group lag, dead letters and the live JSON."""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import WebHome
from tests.web.test_ui_pages import PAGE, login


def _run_scorer(home: WebHome) -> None:
    """Run an app on the home's embedded log: 6 good records out, 1 malformed one dead-lettered;
    then 3 more records that nobody consumed yet (lag 3)."""
    from headwater.stream.app import StreamApp
    from headwater.stream.log import EmbeddedBroker
    from headwater.stream.testing import TestRecord, run_app

    broker = EmbeddedBroker(home.settings.topics_folder)
    try:
        app = StreamApp("scorer")
        app.stream("houses").map(lambda h: {**h, "score": h["price"] * 2}, name="score").to("scored")
        records = [TestRecord({"id": i, "price": float(i)}, key=str(i)) for i in range(6)]
        records.insert(3, TestRecord(b'{"id": 9, "price": ', key=b"bad"))
        run_app(app, inputs={"houses": records}, broker=broker)
        producer = broker.producer()
        for i in range(3):
            producer.produce("houses", b'{"id": 10, "price": 1.0}', key=str(i).encode())
        producer.flush()
        producer.close()
    finally:
        broker.close()


def _snapshot(home: WebHome) -> None:
    from headwater.monitoring.status import instance_id, status_path, write_status

    now = dt.datetime.now(dt.UTC).isoformat()
    iid = instance_id()
    write_status(status_path(home.settings, "scorer", iid), {
        "format": 1, "app": "scorer", "group_id": "scorer", "instance_id": iid, "instance": None,
        "pid": os.getpid(), "hostname": socket.gethostname(), "state": "running", "error": None,
        "started": now, "heartbeat": now, "interval": 2.0, "metrics_port": None,
        "sources": ["houses"], "sinks": ["scored"], "dlq_topic": "scorer.dlq",
        "counters": {"records_in": 7, "records_out": 6, "records_dead_lettered": 1, "batches": 1, "commits": 1},
        "rates": {"records_in": 35.5, "records_out": 30.0, "records_dead_lettered": 5.5},
        "batch_latency": {"count": 1, "p50": 0.004, "p95": 0.012, "p99": 0.02, "max": 0.02},
        "batch_size": {"mean": 7.0, "last": 7},
        "partitions": [{"topic": "houses", "partition": 0, "lag": 3}], "lag": {"total": 3, "measured_at": now},
        "models": [{"step": "predict", "model": "house_prices@champion", "version": "house_prices:1"}],
        "predictions": [{"step": "predict", "model": "house_prices:1", "count": 6,
                         "histogram": [[100000, 2], [200000, 3], [400000, 1]]}],
        "recent_alerts": [{"at": now, "kind": "check", "check": "not_null", "column": "sqft", "count": 2,
                           "message": "2 rows with a null <b>sqft</b>"}],
        "recent_dead_letters": [{"at": now, "step": "decode:houses", "topic": "houses", "partition": 0,
                                 "offset": 3, "error": "msgspec.DecodeError: truncated"}],
    })


@pytest.fixture
def ui(make_client: Callable[..., TestClient], web_home: WebHome) -> TestClient:
    _run_scorer(web_home)
    _snapshot(web_home)
    client = make_client()
    login(client)
    return client


def test_streams_page_shows_apps_topics_groups_and_dead_letters(ui: TestClient) -> None:
    r = ui.get("/streams", headers=PAGE)
    assert r.status_code == 200
    apps = r.text[r.text.index('id="apps"'):]
    assert "scorer" in apps and "running" in apps and "35.5" in apps and "12.0 ms" in apps
    assert "house_prices@champion" in apps
    topics = r.text[r.text.index('id="topics"'):]
    assert "houses" in topics and "scored" in topics and "scorer.dlq" in topics
    assert '<td class="num">10</td>' in topics  # houses: 7 + 3 records
    assert "/streams/dead-letters/scorer" in topics
    groups = r.text[r.text.index('id="groups"'):]
    assert "scorer" in groups and ">3</span>" in groups  # 3 records not consumed yet
    assert "msgspec.DecodeError: truncated" in r.text  # recent dead letters from the snapshot
    assert "2 rows with a null &lt;b&gt;sqft&lt;/b&gt;" in r.text  # alerts, escaped
    assert ui.get("/streams/fragment", headers=PAGE).status_code == 200


def test_dead_letters_page_reads_the_dead_letter_topic(ui: TestClient) -> None:
    r = ui.get("/streams/dead-letters/scorer", headers=PAGE)
    assert r.status_code == 200
    assert "houses[0]@3" in r.text and "decode:houses" in r.text and "DecodeError" in r.text
    assert '{&#34;id&#34;: 9, &#34;price&#34;: ' in r.text  # the record as it came, escaped
    missing = ui.get("/streams/dead-letters/nobody", headers=PAGE)
    assert missing.status_code == 200 and "no dead-letter topic" in missing.text


def test_live_json_sums_the_running_instances(ui: TestClient) -> None:
    body = ui.get("/streams/live.json").json()
    scorer = body["apps"]["scorer"]
    assert (scorer["in"], scorer["out"], scorer["dead"], scorer["lag"]) == (35.5, 30.0, 5.5, 3)
    assert scorer["p95"] == 0.012 and scorer["alerts"] == 1
    assert scorer["predictions"] == {"predict house_prices:1": 6}
    assert scorer["histogram"] == [[100000, 2], [200000, 3], [400000, 1]]
