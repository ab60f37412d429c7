"""Which broker the CLI and stream apps talk to, from :class:`~headwater.settings.Settings`.

::

    from headwater.settings import Settings
    from headwater.stream.connect import open_broker

    broker = open_broker(Settings.from_env())

By default the embedded log in ``$HEADWATER_HOME/topics``. With ``HEADWATER_KAFKA_BOOTSTRAP``
set (``host:port[,host:port...]``), a :class:`~headwater.stream.kafka.KafkaBroker` on that
cluster, with ``HEADWATER_KAFKA_CONFIG`` as librdkafka settings shared by every client:
either a JSON object written inline (``{"security.protocol": "SASL_SSL", ...}``) or the path
of a file holding one, or of a Java-style ``.properties`` file (``key=value`` lines, ``#``
comments), as Kafka's own tools take with ``--command-config``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from headwater.errors import UserError

if TYPE_CHECKING:
    from headwater.settings import Settings
    from headwater.stream.broker import Broker

_CONFIG_HINT = (
    "set HEADWATER_KAFKA_CONFIG to a JSON object of librdkafka settings "
    "(e.g. '{\"security.protocol\": \"SSL\"}') or to the path of a .json or .properties file"
)


def open_broker(settings: Settings) -> Broker:
    """The broker ``settings`` name: Kafka when ``kafka_bootstrap`` is set, else the embedded log."""
    if settings.kafka_bootstrap:
        config = kafka_config(settings.kafka_config)
        try:
            from headwater.stream.kafka import KafkaBroker
        except ModuleNotFoundError as exc:
            raise UserError(
                f"HEADWATER_KAFKA_BOOTSTRAP is set ({settings.kafka_bootstrap}) but confluent-kafka is not installed",
                hint="pip install 'headwater[kafka]', or unset HEADWATER_KAFKA_BOOTSTRAP to use the embedded log",
            ) from exc
        return KafkaBroker(settings.kafka_bootstrap, config=config)
    from headwater.stream.log import EmbeddedBroker

    return EmbeddedBroker(settings.topics_folder)


def broker_label(broker: Broker) -> str:
    """Where ``broker`` keeps topics, for people: ``embedded log in /x/topics`` or ``Kafka at h:p``."""
    path = getattr(broker, "path", None)
    if path is not None:
        return f"embedded log in {path}"
    bootstrap = getattr(broker, "bootstrap_servers", None)
    if bootstrap is not None:
        return f"Kafka at {bootstrap}"
    return type(broker).__name__


def kafka_config(text: str | None) -> dict[str, object]:
    """librdkafka settings from ``HEADWATER_KAFKA_CONFIG``: inline JSON, or a JSON/properties file."""
    if text is None or not text.strip():
        return {}
    text = text.strip()
    if text.startswith("{"):
        return _json_object(text, "HEADWATER_KAFKA_CONFIG")
    path = Path(text).expanduser()
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"HEADWATER_KAFKA_CONFIG names {text!r}, which is neither a JSON object nor an existing file",
            hint=_CONFIG_HINT,
        ) from None
    except OSError as exc:
        raise UserError(f"cannot read the Kafka settings file {path}: {exc}", hint=_CONFIG_HINT) from exc
    if path.suffix.lower() == ".json" or content.lstrip().startswith("{"):
        return _json_object(content, str(path))
    return parse_properties(content, str(path))


def _json_object(text: str, where: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where} is not valid JSON: {exc}", hint=_CONFIG_HINT) from exc
    if not isinstance(value, dict):
        raise UserError(f"{where} must hold a JSON object, not {type(value).__name__}", hint=_CONFIG_HINT)
    for key, item in value.items():
        if isinstance(item, dict | list):
            raise UserError(
                f"{where}: setting {key!r} is a {type(item).__name__}; librdkafka settings are strings, "
                "numbers or booleans",
                hint=_CONFIG_HINT,
            )
    return value


def parse_properties(text: str, where: str = "properties") -> dict[str, object]:
    """``key=value`` (or ``key: value``) lines; ``#`` and ``!`` start comments; values stay strings."""
    out: dict[str, object] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if cut < 0:
            raise UserError(
                f"{where}, line {number}: {line!r} is not a 'key=value' setting", hint=_CONFIG_HINT
            )
        out[line[:cut].strip()] = line[cut + 1 :].strip()
    return out
