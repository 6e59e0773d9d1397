"""One-time sign-in codes by e-mail (SMTP). The message says the code, how long it works and
nothing about the case: no diagnosis, no center, no name."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol

from referrals_web.config import SmtpSettings
from referrals_web.i18n import translations


class CodeMailer(Protocol):
    async def send_code(self, to: str, code: str, *, locale: str, minutes: int) -> None: ...


def code_message(sender: str, to: str, code: str, *, locale: str, minutes: int) -> EmailMessage:
    _ = translations(locale).gettext
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = _("Your sign-in code")
    message.set_content(
        "\n\n".join(
            [
                _("Your code to see your second-opinion case: %(code)s") % {"code": code},
                _("It works for %(minutes)s minutes, once.") % {"minutes": minutes},
                _(
                    "If you did not ask for it, you can ignore this e-mail. Never tell the code "
                    "to anyone, even if they say they are from the clinic."
                ),
            ]
        )
        + "\n"
    )
    return message


class SmtpCodeMailer:
    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    async def send_code(self, to: str, code: str, *, locale: str, minutes: int) -> None:
        import aiosmtplib

        s = self.settings
        await aiosmtplib.send(
            code_message(s.sender, to, code, locale=locale, minutes=minutes),
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            start_tls=s.starttls,
            timeout=s.timeout_seconds,
        )
