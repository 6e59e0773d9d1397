"""How a process connects to Kafka: `KafkaSettings` (TLS, SASL, one principal per service from
the environment) turned into aiokafka's and FastStream's options. The same clients on a real
secured broker: tests/integration/test_kafka_security.py."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import ClassVar

import pytest
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError

from devstack.tls import Authority
from referrals_common.messaging.kafka import (
    broker_security,
    client_options,
    kafka_from_environment,
)
from referrals_common.settings import KafkaSettings, ServiceSettings
from tests.unit.test_settings import IntakeSettings

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("clean_env")]


class PartnersSettings(ServiceSettings):
    service_name: ClassVar[str] = "partners"


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> Authority:
    return Authority.create(tmp_path_factory.mktemp("ca"))


def secured(ca: Authority, **changes: object) -> KafkaSettings:
    values: dict[str, object] = {
        "bootstrap_servers": "kafka-1:9093,kafka-2:9093",
        "security_protocol": "SASL_SSL",
        "username": "partners",
        "password": "s3cr3t-Xq",
        "ssl_cafile": ca.ca_file,
    }
    return KafkaSettings.model_validate(values | changes)


def mutual_tls(ca: Authority, pem: Path) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers="kafka:9093",
        security_protocol="SSL",
        ssl_cafile=ca.ca_file,
        ssl_certfile=pem,
        ssl_keyfile=pem,
    )


def test_plain_text_by_default_as_on_the_local_stack():
    options = client_options("127.0.0.1:19092")
    assert options == {"bootstrap_servers": "127.0.0.1:19092", "security_protocol": "PLAINTEXT"}
    assert broker_security("127.0.0.1:19092") is None


def test_sasl_ssl_logs_in_and_verifies_the_brokers_against_the_ca(ca):
    options = client_options(secured(ca))
    assert options["bootstrap_servers"] == "kafka-1:9093,kafka-2:9093"
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "partners"
    assert options["sasl_plain_password"] == "s3cr3t-Xq"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    subjects = [dict(x[0] for x in c["subject"]) for c in context.get_ca_certs()]
    assert {"commonName": "referrals local CA"} in subjects


def test_the_ca_can_come_as_pem_text_from_the_environment(monkeypatch, ca):
    # On Kubernetes the CA arrives with the credentials, from the service's optional Secret.
    monkeypatch.setenv("REFERRALS_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("REFERRALS_KAFKA__USERNAME", "intake")
    monkeypatch.setenv("REFERRALS_KAFKA__PASSWORD", "i-Pw-81")
    monkeypatch.setenv("REFERRALS_KAFKA__SSL_CADATA", ca.ca_file.read_text())
    context = client_options(IntakeSettings().kafka)["ssl_context"]
    subjects = [dict(x[0] for x in c["subject"]) for c in context.get_ca_certs()]
    assert subjects == [{"commonName": "referrals local CA"}]


@pytest.mark.parametrize(
    ("mechanism", "kind"),
    [("SCRAM-SHA-512", SASLScram512), ("SCRAM-SHA-256", SASLScram256), ("PLAIN", SASLPlaintext)],
)
def test_faststream_gets_the_same_login_and_tls(ca, mechanism, kind):
    security = broker_security(secured(ca, sasl_mechanism=mechanism))
    assert type(security) is kind
    assert security.username == "partners"
    assert security.password == "s3cr3t-Xq"
    assert security.use_ssl
    assert security.ssl_context.verify_mode == ssl.CERT_REQUIRED


def test_sasl_without_tls_sends_no_tls_context(ca):
    kafka = secured(ca, security_protocol="SASL_PLAINTEXT", ssl_cafile=None)
    assert "ssl_context" not in client_options(kafka)
    security = broker_security(kafka)
    assert not security.use_ssl
    assert security.ssl_context is None


def test_mutual_tls_presents_the_client_certificate(ca, tmp_path):
    kafka = mutual_tls(ca, ca.issue(tmp_path, "intake"))  # key and certificate in one file
    options = client_options(kafka)
    assert "sasl_mechanism" not in options
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    security = broker_security(kafka)
    assert type(security) is BaseSecurity
    assert security.use_ssl


def test_a_client_certificate_that_does_not_load_fails_at_start_not_later(ca, tmp_path):
    wrong = tmp_path / "not-a-key.pem"
    wrong.write_text("not a key")
    with pytest.raises(ssl.SSLError):
        client_options(mutual_tls(ca, wrong))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs kafka.username and kafka.password"),
        (
            {"security_protocol": "SASL_SSL", "username": "intake"},
            "needs kafka.username and kafka.password",
        ),
        ({"username": "intake", "password": "x"}, "would not be sent"),
        ({"ssl_cafile": "/etc/ssl/ca.pem"}, "would not use TLS"),
        ({"ssl_cadata": "-----BEGIN CERTIFICATE-----"}, "would not use TLS"),
        (
            {"security_protocol": "SSL", "ssl_certfile": "/etc/kafka/client.pem"},
            "go together",
        ),
        ({"security_protocol": "SASL_TLS"}, "security_protocol"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
    ],
)
def test_inconsistent_settings_are_refused_at_start(values, message):
    with pytest.raises(ValidationError, match=message):
        KafkaSettings.model_validate({"bootstrap_servers": "kafka:9093", **values})


def test_each_service_logs_in_as_its_own_principal_from_one_environment(monkeypatch, ca):
    monkeypatch.setenv("REFERRALS_KAFKA__BOOTSTRAP_SERVERS", "kafka-1:9093")
    monkeypatch.setenv("REFERRALS_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("REFERRALS_KAFKA__SSL_CAFILE", str(ca.ca_file))
    monkeypatch.setenv("REFERRALS_INTAKE_KAFKA__USERNAME", "intake")
    monkeypatch.setenv("REFERRALS_INTAKE_KAFKA__PASSWORD", "i-Pw-81")
    monkeypatch.setenv("REFERRALS_PARTNERS_KAFKA__USERNAME", "partners")
    monkeypatch.setenv("REFERRALS_PARTNERS_KAFKA__PASSWORD", "p-Pw-72")
    intake, partners = IntakeSettings().kafka, PartnersSettings().kafka
    assert (intake.bootstrap_servers, intake.security_protocol) == ("kafka-1:9093", "SASL_SSL")
    assert (intake.username, intake.password.get_secret_value()) == ("intake", "i-Pw-81")
    assert (partners.username, partners.password.get_secret_value()) == ("partners", "p-Pw-72")
    assert partners.ssl_cafile == ca.ca_file


def test_a_placeholder_kafka_password_is_refused_in_production(monkeypatch):
    monkeypatch.setenv("REFERRALS_ENVIRONMENT", "production")
    monkeypatch.setenv("REFERRALS_S3__SECRET_KEY", "vT4q9-Lr2mWx81")
    monkeypatch.setenv("REFERRALS_POSTGRES__DSN", "postgresql://intake:Zq8-real@db/intake")
    monkeypatch.setenv("REFERRALS_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("REFERRALS_KAFKA__USERNAME", "intake")
    monkeypatch.setenv("REFERRALS_KAFKA__PASSWORD", "change-me")
    with pytest.raises(ValidationError, match=r"kafka.password holds a placeholder"):
        IntakeSettings()
    monkeypatch.setenv("REFERRALS_KAFKA__PASSWORD", "Hq3-v81-real")
    assert IntakeSettings().kafka.password.get_secret_value() == "Hq3-v81-real"


def test_operator_commands_read_the_platform_wide_settings(monkeypatch):
    monkeypatch.setenv("REFERRALS_KAFKA__BOOTSTRAP_SERVERS", "kafka-1:9093")
    monkeypatch.setenv("REFERRALS_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("REFERRALS_KAFKA__USERNAME", "ops")
    monkeypatch.setenv("REFERRALS_KAFKA__PASSWORD", "o-Pw-1")
    assert kafka_from_environment().bootstrap_servers == "kafka-1:9093"
    replaced = kafka_from_environment("kafka-9:9093")
    assert replaced.bootstrap_servers == "kafka-9:9093"
    assert replaced.username == "ops"
