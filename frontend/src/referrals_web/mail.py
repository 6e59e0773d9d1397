"""One-time sign-in codes by e-mail (SMTP). The message says the code, how long it works and
nothing about the case: no diagnosis, no center, no name. A patient's code opens their case
(`purpose` "case"); a center staff member's opens the center console ("console"); an
operator's opens the ops screen ("ops")."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol

from referrals_web.config import SmtpSettings
from referrals_web.i18n import translations


class CodeMailer(Protocol):
    async def send_code(
        self, to: str, code: str, *, locale: str, minutes: int, purpose: str = "case"
    ) -> None: ...


def code_message(
    sender: str, to: str, code: str, *, locale: str, minutes: int, purpose: str = "case"
) -> EmailMessage:
    _ = translations(locale).gettext
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    if purpose == "console":
        message["Subject"] = _("Your sign-in code for the center console")
        opening = _("Your code to sign in to the center console: %(code)s") % {"code": code}
    elif purpose == "ops":
        message["Subject"] = _("Your sign-in code for the ops screen")
        opening = _("Your code to sign in to the ops screen: %(code)s") % {"code": code}
    else:
        message["Subject"] = _("Your sign-in code")
        opening = _("Your code to see your second-opinion case: %(code)s") % {"code": code}
    message.set_content(
        "\n\n".join(
            [
                opening,
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

    async def send_code(
        self, to: str, code: str, *, locale: str, minutes: int, purpose: str = "case"
    ) -> None:
        import aiosmtplib

        s = self.settings
        await aiosmtplib.send(
            code_message(s.sender, to, code, locale=locale, minutes=minutes, purpose=purpose),
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            start_tls=s.starttls,
            timeout=s.timeout_seconds,
        )
