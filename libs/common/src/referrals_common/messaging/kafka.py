"""Reaching the Kafka cluster: the clients' connection options (TLS, SASL) from the service's
`KafkaSettings`, and the topics the platform declares (auto-creation is off on our brokers).

Every Kafka client of the platform is made with `client_options` (aiokafka producers, consumers
and admin clients) or `event_broker` (FastStream), so one set of settings decides how all of a
process's connections are encrypted and authenticated."""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from pydantic_settings import BaseSettings

from referrals_common.contracts.topics import TOPIC_CONFIGS, dead_letter
from referrals_common.settings import KafkaSettings, ServiceSettings

Kafka = KafkaSettings | str
"""A service's Kafka settings, or just bootstrap servers (plain text, as on the local stack)."""

_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def kafka_settings(kafka: Kafka) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=kafka) if isinstance(kafka, str) else kafka


class _Environment(BaseSettings):
    """Only the Kafka part of the platform-wide settings, read as every service reads them."""

    model_config = ServiceSettings.model_config
    kafka: KafkaSettings = KafkaSettings()


def kafka_from_environment(bootstrap_servers: str | None = None) -> KafkaSettings:
    """The platform-wide `REFERRALS_KAFKA__*` settings, for the operators' commands that belong
    to no one service (`referrals-dlq`); `bootstrap_servers`, if given, replaces the servers."""
    kafka = _Environment().kafka
    if bootstrap_servers:
        kafka = kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})
    return kafka


def tls_context(settings: KafkaSettings) -> ssl.SSLContext:
    """A client TLS context that verifies the brokers' certificates and host names against
    `ssl_cafile` or `ssl_cadata` (the system's CAs when neither is set), with the client
    certificate if one is set."""
    context = ssl.create_default_context(
        cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
        cadata=settings.ssl_cadata or None,
    )
    if settings.ssl_certfile and settings.ssl_keyfile:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
    return context


def client_options(kafka: Kafka) -> dict[str, Any]:
    """Keyword arguments for an aiokafka producer, consumer or admin client: where the cluster
    is, and how the connection is encrypted and authenticated."""
    settings = kafka_settings(kafka)
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.uses_tls:
        options["ssl_context"] = tls_context(settings)
    if settings.uses_sasl:
        username, password = _credentials(settings)
        options |= {
            "sasl_mechanism": settings.sasl_mechanism,
            "sasl_plain_username": username,
            "sasl_plain_password": password,
        }
    return options


def _credentials(settings: KafkaSettings) -> tuple[str, str]:
    if not (settings.username and settings.password):  # KafkaSettings refuses that already
        raise ValueError("SASL needs kafka.username and kafka.password")
    return settings.username, settings.password.get_secret_value()


def broker_security(kafka: Kafka) -> BaseSecurity | None:
    """The same connection settings as FastStream takes them."""
    settings = kafka_settings(kafka)
    context = tls_context(settings) if settings.uses_tls else None
    if settings.uses_sasl:
        return _SASL[settings.sasl_mechanism](
            *_credentials(settings),
            ssl_context=context,
            use_ssl=settings.uses_tls,
        )
    return BaseSecurity(ssl_context=context, use_ssl=True) if context else None


def event_broker(kafka: Kafka, **options: Any) -> KafkaBroker:
    """A FastStream Kafka broker connected as `kafka` says (`options`: client_id, logger...)."""
    settings = kafka_settings(kafka)
    return KafkaBroker(settings.bootstrap_servers, security=broker_security(settings), **options)


async def ensure_topics(
    kafka: Kafka,
    topics: list[str] | tuple[str, ...],
    *,
    partitions: int = 6,
    replication_factor: int = 1,
    with_dead_letters: bool = True,
) -> list[str]:
    """Create every topic (and its `.dlq`) that does not exist yet, with its `TOPIC_CONFIGS`;
    return the ones created."""
    wanted = list(topics) + ([dead_letter(t) for t in topics] if with_dead_letters else [])
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another replica made it first
                await admin.create_topics(
                    [
                        NewTopic(
                            t, partitions, replication_factor, topic_configs=TOPIC_CONFIGS.get(t)
                        )
                        for t in missing
                    ]
                )
        return missing
    finally:
        await admin.close()
