"""``headwater topics|groups|stream ...``: topics, consumer-group lag, stream apps and the source simulator.

Every command works on the broker of the settings (:func:`headwater.stream.connect.open_broker`):
the embedded log in ``$HEADWATER_HOME/topics``, or Kafka when ``HEADWATER_KAFKA_BOOTSTRAP`` is set.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

import click

from headwater.cli.env import Env
from headwater.cli.output import Col, console, say, table
from headwater.errors import UserError

if TYPE_CHECKING:
    from headwater.stream.broker import Broker, Consumer, Headers, Producer, RecordBatch, TopicPartition
    from headwater.stream.replay import ReplayReport

pass_env = click.make_pass_decorator(Env)


def register(cli: click.Group) -> None:
    """Add the streaming commands to the ``headwater`` group."""
    cli.add_command(topics)
    cli.add_command(groups)
    cli.add_command(stream)


@contextlib.contextmanager
def _broker(env: Env) -> Iterator[Broker]:
    from headwater.stream.connect import open_broker

    broker = open_broker(env.settings)
    try:
        yield broker
    finally:
        broker.close()


def _label(broker: Broker) -> str:
    from rich.markup import escape

    from headwater.stream.connect import broker_label

    return escape(broker_label(broker))


@contextlib.contextmanager
def _stop_flag() -> Iterator[list[int]]:
    """SIGTERM/SIGINT append to the yielded list instead of killing the command mid-write."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# -- formatting -------------------------------------------------------------------------


def size_text(n: int | None) -> str:
    """Bytes for people: ``512 B``, ``1.5 KiB``, ``3.2 MiB``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def bytes_text(data: bytes | None, *, limit: int = 64) -> str:
    """A key or value on one line: UTF-8 text as it is, binary as hex (cut at ``limit`` bytes)."""
    if data is None:
        return "(none)"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and not any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        return text.replace("\r", "\\r").replace("\n", "\\n")
    shown = data[:limit].hex()
    return f"0x{shown}" + (f"... ({len(data):,} bytes)" if len(data) > limit else "")


def time_text(ms: int) -> str:
    """A record timestamp (ms since the epoch) in UTC to the millisecond."""
    try:
        when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return str(ms)
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def lag_bar(lag: int, most: int, width: int = 12) -> str:
    """A bar as long as ``lag`` is against the largest lag shown."""
    if most <= 0 or lag <= 0:
        return ""
    filled = max(1, round(width * lag / most))
    full, empty = ("█", "░") if (console().encoding or "").lower().startswith("utf") else ("#", ".")
    return full * filled + empty * (width - filled)


def _topic_bytes(broker: Broker, topic: str, partition: int | None = None) -> int | None:
    """Bytes on disk of a topic (or one partition) of the embedded log; None on Kafka."""
    root = getattr(broker, "path", None)
    if root is None:
        return None
    folder = os.path.join(root, topic) if partition is None else os.path.join(root, topic, str(partition))
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # retention or a delete may remove files under us
                total += os.stat(os.path.join(dirpath, name)).st_size
    return total


# -- topics -----------------------------------------------------------------------------


@click.group()
def topics() -> None:
    """Create, inspect and read topics."""


@topics.command("list")
@pass_env
def topics_list(env: Env) -> None:
    """List topics: partitions, records kept, end offsets and size on disk."""
    from rich.markup import escape

    with _broker(env) as broker:
        names = broker.list_topics()
        if not names:
            say(f"no topics on {_label(broker)}")
            say("[dim]create one with `headwater topics create NAME`, or replay a file into one with "
                "`headwater stream replay FILE --topic NAME`[/]")
            return
        say(f"topics on {_label(broker)}")
        out = table("topic", Col("partitions", right=True), Col("records", right=True),
                    Col("end offsets", right=True), Col("size", right=True))
        for name in names:
            info = broker.describe_topic(name)
            ends = sum(info.end_offsets.values())
            kept = ends - sum(info.start_offsets.values())
            out.add_row(escape(name), str(info.partitions), f"{kept:,}", f"{ends:,}",
                        size_text(_topic_bytes(broker, name)))
        console().print(out)


@topics.command("create")
@click.argument("name")
@click.option("-p", "--partitions", type=click.IntRange(min=1), default=1, show_default=True,
              help="Number of partitions.")
@click.option("--retention-ms", type=click.IntRange(min=1), default=None,
              help="Delete records older than this many milliseconds (whole segments).")
@click.option("--retention-bytes", type=click.IntRange(min=1), default=None,
              help="Keep at most about this many bytes per partition (whole segments).")
@pass_env
def topics_create(env: Env, name: str, partitions: int, retention_ms: int | None,
                  retention_bytes: int | None) -> None:
    """Create a topic."""
    from rich.markup import escape

    with _broker(env) as broker:
        broker.create_topic(name, partitions, retention_ms=retention_ms, retention_bytes=retention_bytes)
        extra = "".join(f", {k} {v:,}" for k, v in (("retention.ms", retention_ms),
                                                    ("retention.bytes", retention_bytes)) if v is not None)
        say(f"created topic {escape(name)}: {partitions} partition(s){extra}, on {_label(broker)}")


@topics.command("describe")
@click.argument("name")
@pass_env
def topics_describe(env: Env, name: str) -> None:
    """Show a topic's settings and, per partition, its first and next offsets."""
    from rich.markup import escape

    with _broker(env) as broker:
        info = broker.describe_topic(name)
        say(f"[bold]{escape(name)}[/]: {info.partitions} partition(s) on {_label(broker)}")
        if info.config:
            say("config: " + escape(", ".join(f"{k}={v}" for k, v in sorted(info.config.items()))))
        out = table(Col("partition", right=True), Col("start offset", right=True), Col("end offset", right=True),
                    Col("records", right=True), Col("size", right=True))
        for p in range(info.partitions):
            start, end = info.start_offsets.get(p, 0), info.end_offsets.get(p, 0)
            out.add_row(str(p), f"{start:,}", f"{end:,}", f"{end - start:,}", size_text(_topic_bytes(broker, name, p)))
        console().print(out)


@topics.command("delete")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_env
def topics_delete(env: Env, name: str, yes: bool) -> None:
    """Delete a topic, its records and the groups' offsets on it."""
    from rich.markup import escape

    with _broker(env) as broker:
        info = broker.describe_topic(name)  # an unknown topic fails here, before asking
        if not yes:
            records = sum(info.end_offsets.values()) - sum(info.start_offsets.values())
            try:
                sure = click.confirm(f"delete topic {name} and its {records:,} record(s)?", default=False)
            except click.Abort:  # no answer (stdin closed)
                raise UserError(f"topic {name!r} was not deleted: nobody confirmed",
                                hint="pass --yes to delete without being asked") from None
            if not sure:
                say("not deleted")
                raise SystemExit(1)
        broker.delete_topic(name)
        say(f"deleted topic {escape(name)} from {_label(broker)}")


Row = tuple[int, int, int, "bytes | None", "bytes | None", "Headers"]


def _rows(batches: list[RecordBatch]) -> list[Row]:
    rows: list[Row] = []
    for b in batches:
        headers = b.headers or [()] * len(b)
        rows.extend(zip(b.timestamps, [b.partition] * len(b), b.offsets, b.keys, b.values, headers, strict=True))
    return rows


def _print_record(row: Row) -> None:
    from rich.markup import escape

    ts, partition, offset, key, value, headers = row
    line = f"[dim]{partition}:{offset}  {time_text(ts)}[/]  [cyan]key={escape(bytes_text(key))}[/]  " \
           f"{escape(bytes_text(value, limit=512))}"
    if headers:
        shown = ", ".join(f"{k}={bytes_text(v)}" for k, v in headers)
        line += f"  [dim]headers: {escape(shown)}[/]"
    say(line)


def _read_to(consumer: Consumer, ends: dict[TopicPartition, int], *, idle: float = 2.0) -> list[Row]:
    """Poll until every partition is at its end offset (or nothing came for ``idle`` seconds:
    transaction markers take offsets on Kafka that are never returned as records)."""
    import time

    rows: list[Row] = []
    quiet_since = time.monotonic()
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        batches = consumer.poll_batch(10_000, timeout=0.2)
        if batches:
            rows += _rows(batches)
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > idle:
            break
    return rows


@topics.command("tail")
@click.argument("topic")
@click.option("-n", "count", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many of the newest records to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing records as they arrive (Ctrl-C stops).")
@pass_env
def topics_tail(env: Env, topic: str, count: int, follow: bool) -> None:
    """Show the newest records of a topic: partition:offset, time (UTC), key, value, headers.

    Keys and values are shown as UTF-8 text, or as hex when they are binary. The newest
    N are picked across partitions by timestamp. Reads as no group: nothing is committed.
    """
    from headwater.stream.broker import TopicPartition

    with _broker(env) as broker:
        info = broker.describe_topic(topic)
        tps = [TopicPartition(topic, p) for p in range(info.partitions)]
        consumer = broker.consumer(None)
        try:
            consumer.assign(tps)
            ends = {tp: info.end_offsets.get(tp.partition, 0) for tp in tps}
            for tp in tps:
                consumer.seek(tp, max(info.start_offsets.get(tp.partition, 0), ends[tp] - count))
            rows = sorted(_read_to(consumer, ends)) if count else []
            for row in rows[-count:] if count else []:
                _print_record(row)
            if not follow and sum(ends.values()) == sum(info.start_offsets.values()):
                say(f"[dim]topic {topic} has no records[/]")
            if follow:
                with _stop_flag() as stop:
                    while not stop:
                        for row in _rows(consumer.poll_batch(10_000, timeout=0.2)):
                            _print_record(row)
        finally:
            consumer.close()


# -- groups -----------------------------------------------------------------------------


@click.group()
def groups() -> None:
    """Consumer groups: where each stands on its topics."""


@groups.command("describe")
@click.argument("group")
@click.option("--topic", "topic_names", multiple=True,
              help="Show the lag on this topic (repeatable); default: the topics the group committed on.")
@pass_env
def groups_describe(env: Env, group: str, topic_names: tuple[str, ...]) -> None:
    """Show a group's committed offset, end offset and lag per partition."""
    from rich.markup import escape

    with _broker(env) as broker:
        lags = broker.group_lag(group, list(topic_names) or None)
        if not lags:
            raise UserError(
                f"group {group!r} has committed no offsets on {_label(broker)}",
                hint="a stream app's group is its name unless it sets group_id=; "
                     "--topic T shows the lag a new group would have on T",
            )
        say(f"group [bold]{escape(group)}[/] on {_label(broker)}  (lag = end offset - committed offset)")
        most = max(lag.lag for lag in lags)
        out = table("topic", Col("partition", right=True), Col("committed", right=True), Col("end", right=True),
                    Col("lag", right=True), "")
        for lag in sorted(lags, key=lambda x: x.tp):
            committed = "-" if lag.committed is None else f"{lag.committed:,}"
            out.add_row(escape(lag.tp.topic), str(lag.tp.partition), committed, f"{lag.end_offset:,}",
                        f"{lag.lag:,}", lag_bar(lag.lag, most))
        console().print(out)
        say(f"total lag: {sum(lag.lag for lag in lags):,} record(s) on {len(lags)} partition(s)")


# -- stream -----------------------------------------------------------------------------


@click.group()
def stream() -> None:
    """Run stream apps; replay files into topics."""


@stream.command("run")
@click.argument("target", metavar="MODULE:APP")
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run N processes of the app in its group; they share the partitions.")
@click.option("--restart", is_flag=True, help="With --instances: start an instance again when it fails.")
@click.option("--stop-timeout", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="With --instances: seconds to wait for instances to stop before killing them.")
@click.option("--metrics-port", type=click.IntRange(min=0, max=65535), default=None, metavar="PORT",
              help="Serve Prometheus /metrics on 127.0.0.1:PORT (instance i of N: PORT+i-1); "
                   "default $HEADWATER_METRICS_PORT, 0 or unset: off.")
@pass_env
def stream_run(env: Env, target: str, instances: int, restart: bool, stop_timeout: float,
               metrics_port: int | None) -> None:
    """Run the stream app MODULE:APP (a StreamApp, or a function returning one) until SIGTERM/SIGINT.

    On a signal the app finishes its batch, flushes, commits and exits 0. With
    --instances N, N child processes run it and this process supervises them. Every
    instance writes its status to $HEADWATER_HOME/stream/apps/APP/ every 2 s (the web UI reads it).
    """
    from headwater.cli.supervisor import INSTANCE_VARIABLE, Supervisor, child_command, load_app, run_one
    from headwater.monitoring.prometheus import PORT_VARIABLE
    from headwater.monitoring.prometheus import metrics_port as resolve_port

    if instances == 1:
        number = os.environ.get(INSTANCE_VARIABLE, "")
        run_one(env.settings, target,
                metrics_port=resolve_port(metrics_port, instance=int(number) if number.isdigit() else None))
        return
    if ":" not in target:
        load_app(target)  # the same one-line error as a single instance
    base = resolve_port(metrics_port)
    # Each child adds its instance number - 1 to the base port (see headwater.monitoring.prometheus).
    child_env = {k: v for k, v in os.environ.items() if k != PORT_VARIABLE}
    if base:
        child_env[PORT_VARIABLE] = str(base)
    supervisor = Supervisor(child_command(target, debug=env.debug), instances, restart=restart,
                            stop_timeout=stop_timeout, env=child_env)
    raise SystemExit(supervisor.run())


@stream.command("status")
@click.argument("app", required=False)
@click.option("--stale-after", type=click.FloatRange(min=0), default=15.0, show_default=True,
              help="Seconds without a heartbeat after which an instance counts as stopped.")
@click.option("--json", "as_json", is_flag=True, help="Print the snapshots as JSON (one array).")
@pass_env
def stream_status(env: Env, app: str | None, stale_after: float, as_json: bool) -> None:
    """Show the stream-app instances on this home: state, records read per second, dead letters, lag,
    p99 batch latency, model version, time since the last heartbeat, and the last dead letter.

    Read from the status files every instance of `headwater stream run` writes every 2 s.
    Instances whose process is gone are shown one last time as stopped, then forgotten.
    """
    import datetime as dt
    import json

    from rich.markup import escape

    from headwater.cli.output import seconds, state
    from headwater.monitoring.status import apps_folder, read_app_statuses

    found = read_app_statuses(env.settings, app=app, stale_after=stale_after)
    if as_json:
        click.echo(json.dumps([{**s.data, "state": s.state, "stale": s.stale} for s in found], indent=2))
        return
    if not found:
        say(f"no stream app{f' {escape(app)}' if app else ''} has reported in {escape(str(apps_folder(env.settings)))}")
        say("[dim]start one with `headwater stream run module:app`[/]")
        return
    now = dt.datetime.now(dt.UTC)
    # 80 columns: out/s is left to --json (it is in/s less what is filtered or dead-lettered).
    out = table("app#instance", "state", Col("in/s", right=True), Col("DLQ", right=True),
                Col("lag", right=True), Col("p99", right=True), "model", Col("beat", right=True))
    for s in found:
        d = s.data
        rates, counters = d.get("rates") or {}, d.get("counters") or {}
        models = ", ".join(m.get("version") or m.get("model") or "?" for m in d.get("models") or []) or "-"
        age = seconds(max(0.0, (now - s.heartbeat).total_seconds())) if s.heartbeat else "-"
        out.add_row(escape(_instance_label(s.app, d.get("instance"), s.pid)), state(s.state),
                    _compact(rates.get("records_in", 0)),
                    _compact(counters.get("records_dead_lettered", 0)), _compact((d.get("lag") or {}).get("total", 0)),
                    seconds((d.get("batch_latency") or {}).get("p99")), escape(models), age)
    console().print(out)
    for s in found:
        dead = s.data.get("recent_dead_letters") or []
        if dead:
            last = dead[-1]
            say(f"[dim]{escape(_instance_label(s.app, s.data.get('instance'), s.pid))} (pid {s.pid}): last dead "
                f"letter at step {escape(str(last['step']))}: {escape(str(last['error']))}[/]")


def _instance_label(app: str, number: object, pid: int | None) -> str:
    """``scorer#2`` under ``--instances``, else ``scorer@pid``."""
    return f"{app}#{number}" if number else f"{app}@{pid}"


def _compact(n: float | int) -> str:
    """A count or rate in at most 6 characters: ``950``, ``1.5k``, ``120k``, ``3.2M``."""
    value = float(n)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            shown = value / scale
            return f"{shown:.1f}{unit}" if abs(shown) < 100 else f"{shown:.0f}{unit}"
    return f"{value:.0f}"


@stream.command("replay")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--topic", "-t", required=True, help="Topic to write to (created if missing).")
@click.option("--rate", default=None, metavar="N/s", help="Records per second, e.g. 500 or 2k/s (default: as fast "
                                                           "as possible).")
@click.option("--key", "key", default=None, metavar="COL", help="Column whose value keys the records.")
@click.option("--loop", is_flag=True, help="Start over at the end of the file (until --limit or Ctrl-C).")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Stop after this many records.")
@click.option("--partitions", "-p", type=click.IntRange(min=1), default=None,
              help="Partitions of the topic if it is created (default 1); checked if it exists.")
@click.option("--format", "fmt", type=click.Choice(["csv", "tsv", "parquet", "jsonl"]), default=None,
              help="File format (default: from the file's suffix).")
@pass_env
def stream_replay(env: Env, file: str, topic: str, rate: str | None, key: str | None, loop: bool,
                  limit: int | None, partitions: int | None, fmt: str | None) -> None:
    """Replay the rows of a CSV, Parquet or JSON-lines FILE into a topic as JSON records.

    Rows keep the file's order (per partition, when keyed); dates become ISO 8601
    strings and nulls stay null. A progress bar shows on a terminal; the last line
    gives rows sent, time taken and the rate achieved.
    """
    from rich.markup import escape

    from headwater.stream.broker import TopicNotFoundError
    from headwater.stream.replay import count_rows, detect_format, parse_rate, replay

    per_second = parse_rate(rate) if rate is not None else None
    detect_format(file, fmt)
    with _broker(env) as broker:
        try:
            existing = broker.describe_topic(topic).partitions
        except TopicNotFoundError:
            broker.create_topic(topic, partitions or 1, exist_ok=True)
        else:
            if partitions is not None and partitions != existing:
                raise UserError(f"topic {topic!r} exists with {existing} partition(s), not {partitions}",
                                hint="leave out --partitions, or replay into a new topic")
        producer = broker.producer()
        out = console()
        try:
            with _stop_flag() as stop:
                if not out.is_terminal:
                    report = replay(file, producer, topic, rate=per_second, key=key, loop=loop, limit=limit,
                                    fmt=fmt, should_stop=lambda: bool(stop))
                else:
                    total = limit if limit is not None else (None if loop else count_rows(file, fmt))
                    report = _replay_with_bar(file, producer, topic, total, per_second, key, loop, limit, fmt, stop)
        finally:
            producer.close()
        say(escape(report.summary()))


def _replay_with_bar(file: str, producer: Producer, topic: str, total: int | None, rate: float | None,
                     key: str | None, loop: bool, limit: int | None, fmt: str | None,
                     stop: list[int]) -> ReplayReport:
    """The replay with a Rich progress bar (a terminal only: never in a pipe or a log)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from headwater.stream.replay import replay

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[speed]}"), TimeElapsedColumn()]
    with Progress(*columns, console=console(), transient=True) as progress:
        bar = progress.add_task(f"replay -> {topic}", total=total, speed="")

        def on_progress(sent: int) -> None:
            task = progress.tasks[0]
            speed = f"{sent / task.elapsed:,.0f}/s" if task.elapsed else ""
            progress.update(bar, completed=sent, speed=speed)

        return replay(file, producer, topic, rate=rate, key=key, loop=loop, limit=limit, fmt=fmt,
                      on_progress=on_progress, should_stop=lambda: bool(stop))
