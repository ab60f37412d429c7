"""Settings: one frozen object, built in one place from the environment.

Nothing reads the environment at import time; :func:`Settings.from_env` is called
by the CLI (or by a user's code) and the result is passed down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where headwater keeps its state and how it runs.

    ``home`` holds the SQLite database, logs and task artifacts by default, and the
    embedded log's topics (``topics_folder``). ``kafka_bootstrap`` set means stream
    commands and apps use that Kafka cluster instead; ``kafka_config`` is the raw
    ``HEADWATER_KAFKA_CONFIG`` text (a JSON object or a file path), read by
    :func:`headwater.stream.connect.open_broker`, not here: building settings does no I/O.
    """

    home: Path
    db_url: str
    dags_folder: Path
    parallelism: int = 2
    dag_parse_timeout: float = 30.0
    min_file_process_interval: float = 30.0
    scheduler_heartbeat: float = 1.0
    xcom_inline_limit: int = 64 * 1024
    kafka_bootstrap: str | None = None
    kafka_config: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def logs_folder(self) -> Path:
        return self.home / "logs"

    @property
    def artifacts_folder(self) -> Path:
        return self.home / "artifacts"

    @property
    def topics_folder(self) -> Path:
        """Where the embedded log keeps its topics."""
        return self.home / "topics"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from ``HEADWATER_*`` variables, then apply ``overrides``.

        ``HEADWATER_HOME`` (default ``./.headwater``), ``HEADWATER_DB_URL`` (default a
        SQLite file in home), ``HEADWATER_DAGS_FOLDER`` (default ``home/dags``),
        ``HEADWATER_PARALLELISM`` (default: number of CPUs), ``HEADWATER_DAG_PARSE_TIMEOUT``
        (seconds to import one DAG file, default 30), ``HEADWATER_KAFKA_BOOTSTRAP`` (Kafka
        brokers ``host:port,...``; unset: the embedded log), ``HEADWATER_KAFKA_CONFIG``
        (librdkafka settings: a JSON object, or the path of a JSON or ``.properties`` file).
        """
        env = dict(os.environ if env is None else env)
        home = Path(env.get("HEADWATER_HOME", ".headwater")).expanduser().resolve()
        db_url = env.get("HEADWATER_DB_URL") or f"sqlite:///{home / 'headwater.db'}"
        dags = Path(env.get("HEADWATER_DAGS_FOLDER", str(home / "dags"))).expanduser().resolve()
        parallelism = int(env.get("HEADWATER_PARALLELISM", str(os.cpu_count() or 2)))
        parse_timeout = float(env.get("HEADWATER_DAG_PARSE_TIMEOUT", "30"))
        settings = cls(
            home=home, db_url=db_url, dags_folder=dags, parallelism=max(1, parallelism),
            dag_parse_timeout=parse_timeout,
            kafka_bootstrap=env.get("HEADWATER_KAFKA_BOOTSTRAP", "").strip() or None,
            kafka_config=env.get("HEADWATER_KAFKA_CONFIG", "").strip() or None,
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        return replace(settings, **clean) if clean else settings  # type: ignore[arg-type]
