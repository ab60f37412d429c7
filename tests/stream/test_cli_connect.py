"""Which broker the CLI opens: the embedded log by default, Kafka from HEADWATER_KAFKA_BOOTSTRAP.

The last test drives the streaming commands against a real Kafka-protocol broker (Tansu).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from headwater.errors import UserError
from headwater.settings import Settings
from headwater.stream.connect import broker_label, kafka_config, open_broker, parse_properties
from headwater.stream.log import EmbeddedBroker
from headwater.stream.partitioner import partition_for
from tests.stream.clitools import StreamHome


def test_the_embedded_log_in_home_is_the_default(tmp_path: Path) -> None:
    settings = Settings.from_env({"HEADWATER_HOME": str(tmp_path)})
    assert settings.kafka_bootstrap is None and settings.topics_folder == tmp_path / "topics"
    broker = open_broker(settings)
    try:
        assert isinstance(broker, EmbeddedBroker) and broker.path == str(tmp_path / "topics")
        assert broker_label(broker) == f"embedded log in {tmp_path / 'topics'}"
    finally:
        broker.close()


def test_kafka_when_a_bootstrap_is_set_with_its_settings_passed_through(tmp_path: Path) -> None:
    pytest.importorskip("confluent_kafka")
    from headwater.stream.kafka import KafkaBroker

    env = {"HEADWATER_HOME": str(tmp_path), "HEADWATER_KAFKA_BOOTSTRAP": " 127.0.0.1:9092,127.0.0.1:9093 ",
           "HEADWATER_KAFKA_CONFIG": '{"security.protocol": "SASL_SSL", "linger.ms": 20}'}
    settings = Settings.from_env(env)
    assert settings.kafka_bootstrap == "127.0.0.1:9092,127.0.0.1:9093"
    broker = open_broker(settings)  # nothing connects yet
    assert isinstance(broker, KafkaBroker)
    assert broker.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9093"
    assert broker.producer_settings()["security.protocol"] == "SASL_SSL"
    assert broker.producer_settings()["linger.ms"] == 20
    assert broker_label(broker) == "Kafka at 127.0.0.1:9092,127.0.0.1:9093"
    broker.close()


def test_kafka_settings_from_inline_json_a_json_file_or_a_properties_file(tmp_path: Path) -> None:
    assert kafka_config(None) == kafka_config("  ") == {}
    assert kafka_config('{"acks": "all", "linger.ms": 5, "enable.idempotence": true}') == {
        "acks": "all", "linger.ms": 5, "enable.idempotence": True}
    as_json = tmp_path / "kafka.json"
    as_json.write_text(json.dumps({"sasl.username": "me"}))
    assert kafka_config(str(as_json)) == {"sasl.username": "me"}
    props = tmp_path / "client.properties"
    props.write_text(textwrap.dedent("""\
        # from the Kafka tools
        security.protocol=SASL_SSL
        ! another comment
        sasl.mechanism : PLAIN
        sasl.jaas.config=org.apache...PlainLoginModule required username="u" password="p=1";

        """))
    assert kafka_config(str(props)) == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
        "sasl.jaas.config": 'org.apache...PlainLoginModule required username="u" password="p=1";'}


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "neither a JSON object nor an existing file"),
    ('{"a": {"b": 1}}', "setting 'a' is a dict"),
    ("/no/such/file.properties", "neither a JSON object nor an existing file"),
])
def test_bad_kafka_settings_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as excinfo:
        kafka_config(text)
    assert "HEADWATER_KAFKA_CONFIG" in (excinfo.value.hint or "")
    with pytest.raises(UserError, match="line 2"):
        parse_properties("a=1\njust words\n")


def test_the_cli_reports_bad_kafka_settings_in_one_line(tmp_path: Path) -> None:
    env = StreamHome(tmp_path).env(HEADWATER_KAFKA_BOOTSTRAP="127.0.0.1:1", HEADWATER_KAFKA_CONFIG="{oops")
    proc = subprocess.run([sys.executable, "-m", "headwater", "topics", "list"], env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: HEADWATER_KAFKA_CONFIG is not valid JSON")


APP = textwrap.dedent(
    """
    import polars as pl
    from headwater.stream.app import StreamApp

    app = StreamApp("{name}", max_batch_records=100, max_batch_latency=0.01)
    app.stream("{source}").map_batch(lambda df: df.with_columns(seen=pl.lit(True))).to("{sink}")
    """
)


@pytest.mark.service
def test_the_streaming_commands_on_kafka(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from tests.stream.tansu import tansu_bootstrap_for

    bootstrap = tansu_bootstrap_for(request)
    hw = StreamHome(tmp_path)
    env = hw.env(HEADWATER_KAFKA_BOOTSTRAP=bootstrap)
    suffix = uuid.uuid4().hex[:8]  # the broker is shared by the session
    source, sink, app_name = f"houses-{suffix}", f"seen-{suffix}", f"watcher-{suffix}"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "headwater", *args], env=env, cwd=tmp_path, text=True,
                              capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"headwater {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    cli("topics", "create", source, "-p", "3")
    cli("topics", "create", sink, "-p", "1")
    assert f"on Kafka at {bootstrap}" in cli("topics", "list").stdout
    (tmp_path / "houses.jsonl").write_text("".join(json.dumps({"id": i, "city": f"c{i % 5}"}) + "\n"
                                                   for i in range(200)))
    assert f"sent 200 rows to {source}" in cli("stream", "replay", "houses.jsonl", "-t", source, "--key", "city").stdout

    described = cli("topics", "describe", source).stdout
    ends = {int(line.split()[0]): int(line.split()[2]) for line in described.splitlines()
            if line.split()[:1] and line.split()[0].isdigit()}
    expected = {p: sum(1 for i in range(200) if partition_for(f"c{i % 5}".encode(), 3) == p) for p in range(3)}
    assert ends == expected
    tail = cli("topics", "tail", source, "-n", "2").stdout.splitlines()
    assert len(tail) == 2 and all('"city"' in line for line in tail)

    (tmp_path / "watcher.py").write_text(APP.format(name=app_name, source=source, sink=sink))
    app = subprocess.Popen([sys.executable, "-m", "headwater", "stream", "run", "watcher:app"], env=env,
                           cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            lines = cli("topics", "describe", sink).stdout.splitlines()
            if any(line.split()[:3] == ["0", "0", "200"] for line in lines):
                break
            time.sleep(0.5)
        app.send_signal(signal.SIGTERM)
        out, _ = app.communicate(timeout=30)
    finally:
        if app.poll() is None:
            app.kill()
            app.communicate()
    assert app.returncode == 0, out
    assert "200 records in, 200 out" in out, out
    lag = cli("groups", "describe", app_name).stdout
    assert "total lag: 0 record(s) on 3 partition(s)" in lag, lag
