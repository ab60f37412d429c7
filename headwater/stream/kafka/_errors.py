"""Translation of confluent-kafka errors into headwater's, at the adapter edge."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from headwater.errors import HeadwaterError
from headwater.stream.broker import BrokerError, TopicExistsError, TopicNotFoundError

UNKNOWN_TOPIC_CODES = frozenset(
    {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}
)
UNREACHABLE_CODES = frozenset({KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError._ALL_BROKERS_DOWN})


class KafkaTransactionError(BrokerError):
    """A transaction step failed.

    ``abortable``: call ``abort()`` and process the batch again. ``retriable``: the same
    call may be tried again. ``fatal``: the producer is unusable; make a new one.
    """

    def __init__(
        self, message: str, *, hint: str | None = None, abortable: bool, retriable: bool, fatal: bool
    ) -> None:
        super().__init__(message, hint=hint)
        self.abortable = abortable
        self.retriable = retriable
        self.fatal = fatal


class KafkaCommitError(BrokerError):
    """Offsets could not be committed (often: the group rebalanced and the partition moved)."""


def kafka_error_of(exc: BaseException) -> KafkaError | None:
    """The KafkaError a KafkaException carries, if any."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def connection_hint(bootstrap: str) -> str:
    return (
        f"check that a Kafka broker answers at {bootstrap} and that security settings "
        "(security.protocol, sasl.*, ssl.*) match its listener"
    )


def describe(err: KafkaError | None, exc: BaseException) -> str:
    if err is None:
        return str(exc) or type(exc).__name__
    return f"{err.str()} ({err.name()})"


def translate(exc: BaseException, action: str, bootstrap: str, *, topic: str | None = None) -> HeadwaterError:
    """A headwater error for ``exc``, raised while doing ``action`` (a phrase: "create topic 'x'")."""
    err = kafka_error_of(exc)
    code = err.code() if err is not None else None
    if code in UNKNOWN_TOPIC_CODES and topic is not None:
        return TopicNotFoundError(f"topic {topic!r} does not exist on Kafka at {bootstrap}", hint="create it first")
    if code == KafkaError.TOPIC_ALREADY_EXISTS and topic is not None:
        return TopicExistsError(f"topic {topic!r} already exists", hint="pick another name or delete it first")
    if code in UNREACHABLE_CODES or isinstance(exc, TimeoutError):
        return BrokerError(
            f"could not {action}: Kafka at {bootstrap} did not answer ({describe(err, exc)})",
            hint=connection_hint(bootstrap),
        )
    return BrokerError(
        f"could not {action} on Kafka at {bootstrap}: {describe(err, exc)}",
        hint="see the broker's log for the reason; " + connection_hint(bootstrap),
    )
