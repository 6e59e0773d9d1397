"""One-time sign-in codes by text message, for a patient who signs in with the phone number given
on the case. The text is sent through the platform's shared Twilio-compatible provider
(`referrals_common.sms`: the outbound guard, E.164, error classification), the same account
notifications uses. It says the code, how long it works and a warning, in the session's
language, in one SMS part (Ukrainian texts take 70 characters a part): no case reference, no
diagnosis, no center, no name, since a phone's lock screen shows it to anyone nearby.
"""

from __future__ import annotations

from typing import Protocol

from referrals_common.outbound import OutboundPolicy
from referrals_common.sms import SmsProvider, TwilioSettings, TwilioSmsProvider
from referrals_web.i18n import translations


class CodeTexter(Protocol):
    async def send_code(self, to: str, code: str, *, locale: str, minutes: int) -> None:
        """Sends `code` to the E.164 number `to`; raises `referrals_common.sms.SmsError`."""
        ...


def code_text(code: str, *, locale: str, minutes: int) -> str:
    """The text of a sign-in code, in the page's language."""
    _ = translations(locale).gettext
    return _("Sign-in code: %(code)s. It works for %(minutes)s min. Never share it.") % {
        "code": code,
        "minutes": minutes,
    }


class SmsCodeTexter:
    """`CodeTexter` over an SMS provider."""

    def __init__(self, provider: SmsProvider) -> None:
        self.provider = provider

    async def send_code(self, to: str, code: str, *, locale: str, minutes: int) -> None:
        await self.provider.send_sms(to, code_text(code, locale=locale, minutes=minutes))

    async def aclose(self) -> None:
        close = getattr(self.provider, "aclose", None)
        if close is not None:
            await close()


def texter_from_settings(
    sms: TwilioSettings | None, environment: str, allowed: list[str]
) -> SmsCodeTexter | None:
    """The texter for the configured account, its calls through the outbound guard (a local
    sink only as an explicit `host:port` entry); None when no account is configured."""
    if sms is None:
        return None
    policy = OutboundPolicy.for_environment(environment, allowed)
    return SmsCodeTexter(TwilioSmsProvider(sms, policy=policy))
