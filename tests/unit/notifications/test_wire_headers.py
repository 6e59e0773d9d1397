"""The e-mail's headers as the `email` package folds them, without the package folding each
message's own (issue 25): a subject with the case's reference, the notification's Message-ID and a
multipart boundary differ from one message to the next only in their ids and digits, so their
folded form is made once per trigger and language and the ids put back in it. The wire form as a
whole is compared with the package's in test_channels; here, the headers for many ids."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from email import policy
from email.headerregistry import HeaderRegistry
from typing import Any

import pytest

from referrals_common.contracts.notifications import NotificationChannel as C
from referrals_common.contracts.notifications import NotificationTrigger as T
from referrals_notifications.channels import email as email_channel
from referrals_notifications.channels.email import SmtpSettings, SmtpTls, email_bytes
from referrals_notifications.messages import case_reference
from referrals_notifications.rendering import RenderedMessage, Renderer

from .samples import sample_context

pytestmark = pytest.mark.unit

RENDERER = Renderer()
SMTP = SmtpSettings(port=1025, tls=SmtpTls.NONE)


def packaged(name: str, value: str) -> bytes:
    """The header as the `email` package folds it for aiosmtplib."""
    return policy.SMTP.fold_binary(name, policy.SMTP.header_factory(name, value))


def subjects() -> list[str]:
    """Every trigger's subject in both languages, for a few cases."""
    rendered = []
    for trigger in T:
        for locale in ("uk", "en"):
            for _ in range(3):
                reference = case_reference(uuid.uuid4())
                context = sample_context(trigger, locale, case_ref=reference)
                rendered.append(RENDERER.render(trigger, context, C.EMAIL).subject)
    return rendered


ODD = [
    "Запит 3F0F-6C7D: " + "слово " * 20,
    "Запит 3F0F-6C7D: готово!",  # the mask's own character: folded by the package
    "Запит 3F0F-6C7D#: готово",
    "Запит " + "3F0F-6C7D " * 12 + "готово",
    "Запит 3F0F-6C7D: " + "дуже довга тема листа " * 6,
    "=?utf-8?q?hi?= 3F0F-6C7D",
    "3F0F-6C7D",
    "Ваш запит " + "1" * 90,
    "Request 3F0F-6C7D: " + "word " * 30,
    "Запит №12, 3F0F-6C7D, 2026-04-01 10:00 — " + "ще " * 15 + "A1B2-C3D4",
]


@pytest.mark.parametrize("subject", subjects() + ODD)
def test_a_subject_is_folded_as_the_email_package_folds_it(subject: str) -> None:
    assert email_channel._header("Subject", subject) == packaged("Subject", subject)


def test_subjects_for_many_cases_are_folded_as_the_email_package_folds_them() -> None:
    """The case's reference inside an encoded word (most Ukrainian subjects) or as it is."""
    generator = random.Random(2025)
    for trigger in T:
        for locale in ("uk", "en"):
            for _ in range(20):
                reference = case_reference(uuid.UUID(int=generator.getrandbits(128)))
                context = sample_context(trigger, locale, case_ref=reference)
                subject = RENDERER.render(trigger, context, C.EMAIL).subject
                assert email_channel._header("Subject", subject) == packaged("Subject", subject)


def test_message_ids_and_boundaries_are_folded_as_the_email_package_folds_them() -> None:
    generator = random.Random(25)
    for _ in range(300):
        notification = uuid.UUID(int=generator.getrandbits(128))
        message_id = f"<notification.{notification}@referrals.localhost>"
        assert email_channel._header("Message-ID", message_id) == packaged("Message-ID", message_id)
        boundary = f"{'=' * 15}{generator.randrange(10**18, 10**19):019d}=="
        for subtype in ("alternative", "mixed"):
            value = f'multipart/{subtype}; boundary="{boundary}"'
            assert email_channel._header("Content-Type", value) == packaged("Content-Type", value)


def test_a_second_message_of_the_same_kind_has_no_header_folded_by_the_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first message of a trigger and language folds its subject, Message-ID and boundary
    through the package (once); the next one, to another case, none of them (each was folded
    by the package for every message: three parses and folds)."""
    parsed: list[str] = []
    parse = HeaderRegistry.__call__

    def counted(registry: HeaderRegistry, name: str, value: Any) -> Any:
        parsed.append(name)
        return parse(registry, name, value)

    monkeypatch.setattr(HeaderRegistry, "__call__", counted)

    def message(trigger: T) -> RenderedMessage:
        context = sample_context(trigger, "uk", case_ref=case_reference(uuid.uuid4()))
        rendered = RENDERER.render(trigger, context, C.EMAIL)
        return replace(rendered, notification_id=uuid.uuid4())

    # "Ми отримали ваш запит 4795-7F01" (the reference as it is), "Запит 50CD-D214: надіслано
    # до центру на розгляд" (the reference inside the subject's encoded word)
    for trigger in (T.CASE_SUBMITTED, T.REFERRAL_REQUESTED):
        email_bytes(SMTP, "olena@example.org", message(trigger))
        parsed.clear()
        email_bytes(SMTP, "olena@example.org", message(trigger))
        assert parsed == [], trigger
