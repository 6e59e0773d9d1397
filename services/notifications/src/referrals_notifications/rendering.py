"""Turning a trigger and its context into the words a patient reads, in the patient's language.

`Renderer` loads the Jinja2 templates and the compiled gettext catalogs once, at start-up, and keeps
one Jinja2 environment per spoken locale (the i18n extension binds one catalog to an environment).
Every template is compiled up front so a broken template stops the service instead of a message.

Templates live in `templates/<trigger>/`: `subject.txt`, `body.txt`, `body.html` and `sms.txt`.
HTML is autoescaped; text is not. Undefined variables raise (`StrictUndefined`). Dates are shown in
the patient's time zone and language with babel, language and country names come from babel's CLDR
data in the patient's language, so translators never translate "German" or "Germany", and prices
are written the patient's way by babel too (`900,00 EUR` / `€900.00`).

The consultation meeting's booking and cancellation e-mails carry a calendar file (see
`meeting_calendar`), its words rendered from `templates/calendar/` and the trigger's
`calendar.txt`; SMS and webhooks carry no attachment.

A webhook is not a text for a person: `build_webhook_message` makes the JSON body the partner front
end receives, with codes and dates only (see `MessageContext.webhook_facts`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import (
    format_date,
    format_interval,
    format_time,
    get_datetime_format,
    get_timezone_location,
)
from babel.lists import format_list
from babel.numbers import format_currency
from babel.support import Translations
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from referrals_common.contracts.intake import CaseStatus
from referrals_common.contracts.notifications import NotificationChannel, NotificationTrigger

from . import meeting_calendar
from .messages import (
    CONTEXT_MODELS,
    MeetingBookedContext,
    MeetingCancelledContext,
    MeetingOfferedContext,
    MessageContext,
    UnroutableOpsAlert,
)

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
LOCALE_DIR = PACKAGE_DIR / "locale"
DOMAIN = "messages"

SUPPORTED_LOCALES: tuple[str, ...] = ("uk", "en")
FALLBACK_LOCALE = "en"

KYIV_ZONES = frozenset({"Europe/Kyiv", "Europe/Kiev"})

EMAIL_PARTS = ("subject.txt", "body.txt", "body.html")
SMS_PART = "sms.txt"
OPS_ALERT_TEMPLATES = ("ops/case_unroutable/subject.txt", "ops/case_unroutable/body.txt")
CALENDAR_SUMMARY = "calendar/summary.txt"
CALENDAR_PART = "calendar.txt"
"""The calendar entry's description, for the triggers whose e-mail carries a calendar file."""
CALENDAR_TRIGGERS = (
    NotificationTrigger.MEETING_OFFERED,
    NotificationTrigger.MEETING_BOOKED,
    NotificationTrigger.MEETING_CANCELLED,
)


def N_(message: str) -> str:
    """Marks a string for extraction (the gettext convention); it is translated where used."""
    return message


KYIV_TIME = N_("%(datetime)s Kyiv time")


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file an e-mail carries: its name, media type (with parameters) and content."""

    filename: str
    media_type: str
    """`maintype/subtype`: `text/calendar`."""
    content: bytes
    parameters: tuple[tuple[str, str], ...] = ()
    """Content-Type parameters besides the name and charset: `(("method", "REQUEST"),)`."""


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """A message ready for a channel: `html` and `attachments` only for e-mail; one line of
    `text` for SMS."""

    subject: str
    text: str
    html: str | None = None
    notification_id: UUID | None = None
    """The delivery this message is for: every attempt to send it carries it (the e-mail's
    `Message-ID`), so a receiver can drop a repeat after a crash between send and record."""
    attachments: tuple[Attachment, ...] = ()


class UnknownCode(ValueError):
    """A template met a code (a reason, a kind) it has no words for: a contract grew a value."""


def resolve_locale(tag: str) -> str:
    """The spoken locale for a language tag: `uk-UA` -> `uk`; anything not spoken -> `en`."""
    primary = re.split(r"[-_]", tag, maxsplit=1)[0].lower()
    return primary if primary in SUPPORTED_LOCALES else FALLBACK_LOCALE


def load_translations(locale: str, locale_dir: Path = LOCALE_DIR) -> Translations:
    """The compiled catalog of `locale`; a missing one is an error, never a silent English."""
    path = locale_dir / locale / "LC_MESSAGES" / f"{DOMAIN}.mo"
    with path.open("rb") as handle:
        return Translations(handle, domain=DOMAIN)


@dataclass(frozen=True)
class LocaleFormats:
    """Dates, languages and countries in one locale, with babel: the templates' filters."""

    locale: Locale
    gettext: Callable[[str], str]

    # In this class `datetime` names the filter below, so the type is spelt `dt.datetime`.
    def datetime(self, value: dt.datetime, time_zone: str) -> str:
        """A moment with its date, time and zone, e.g. `15 квітня 2026 р., 14:00 за київським
        часом`."""
        zone = ZoneInfo(time_zone)
        local = value.astimezone(zone)
        day = format_date(local, "long", locale=self.locale)
        clock = format_time(value, "short", tzinfo=zone, locale=self.locale)
        return self._in_zone(self._day_and_clock(day, clock), time_zone)

    def meeting_time(self, starts_at: dt.datetime, ends_at: dt.datetime, time_zone: str) -> str:
        """A meeting's weekday, date and hours on the clock of `time_zone`, with the zone named:
        `середа, 8 квітня 2026 р., 15:00–16:00 за київським часом`, `Wednesday, April 8, 2026,
        2:00 – 3:00 PM, Germany (Berlin) Time`."""
        zone = ZoneInfo(time_zone)
        start, end = starts_at.astimezone(zone), ends_at.astimezone(zone)
        day = format_date(start, "full", locale=self.locale)
        twelve_hours = "h" in str(self.locale.time_formats["short"].pattern)
        hours = format_interval(
            start, end, "hm" if twelve_hours else "Hm", tzinfo=zone, locale=self.locale
        )
        return self._in_zone(self._day_and_clock(day, hours), time_zone)

    def _day_and_clock(self, day: str, clock: str) -> str:
        pattern = str(get_datetime_format("long", locale=self.locale)).replace("'", "")
        return pattern.replace("{1}", day).replace("{0}", clock)

    def _in_zone(self, text: str, time_zone: str) -> str:
        if time_zone in KYIV_ZONES:
            return self.gettext(KYIV_TIME) % {"datetime": text}
        return f"{text}, {get_timezone_location(ZoneInfo(time_zone), locale=self.locale)}"

    def date(self, value: dt.datetime, time_zone: str) -> str:
        """The day of a moment in the patient's time zone: `15 April 2026`."""
        return format_date(value.astimezone(ZoneInfo(time_zone)), "long", locale=self.locale)

    def language(self, code: str) -> str:
        """A language's name in this locale: `de` -> `німецька` / `German`."""
        return str(self.locale.languages.get(code, code))

    def languages(self, codes: Iterable[str]) -> str:
        """Alternatives: `English or German` / `англійська або німецька`."""
        return format_list([self.language(code) for code in codes], "or", locale=self.locale)

    def country(self, code: str) -> str:
        """A country's name in this locale: `DE` -> `Німеччина` / `Germany`."""
        return str(self.locale.territories.get(code, code))

    def price(self, amount: float, currency: str) -> str:
        """An amount of money in this locale: `900,00 EUR` / `€900.00`."""
        return format_currency(amount, currency, locale=self.locale)


def _minutes(starts_at: datetime, ends_at: datetime) -> int:
    """How many whole minutes from `starts_at` to `ends_at`: a meeting's length."""
    return int((ends_at - starts_at).total_seconds() // 60)


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _unknown_code(kind: str, value: object) -> str:
    raise UnknownCode(f"no wording for {kind} {value!r}")


_KEPT_TRANSLATIONS = 4096
"""The most strings without variables a locale's gettext keeps translated (the templates have a
few hundred, all literals)."""


def _newstyle_gettext(translate: Callable[[str], str]) -> Callable[..., str]:
    """What `jinja2.ext.i18n`'s newstyle `gettext` does, calling the catalog directly: the
    translation, marked safe where the template autoescapes (its variables escaped as they are
    put in), always formatted with its variables (`%%` is a percent sign in every string). A
    string without variables is the same each time: translated and formatted once (per
    autoescaping), then kept (the catalog does not change while the renderer lives)."""
    kept: dict[tuple[str, bool], str] = {}

    def translated(string: str, autoescape: bool, variables: dict[str, Any]) -> str:
        text = translate(string)
        if autoescape:
            text = Markup(text)  # noqa: S704 - our catalog's words, as jinja2.ext.i18n marks them
        return text % variables

    @pass_context
    def gettext(context: Context, string: str, /, **variables: Any) -> str:
        autoescape = context.eval_ctx.autoescape
        if variables:
            return translated(string, autoescape, variables)
        key = (string, autoescape)
        text = kept.get(key)
        if text is None:
            text = translated(string, autoescape, variables)
            if len(kept) < _KEPT_TRANSLATIONS:
                kept[key] = text
        return text

    return gettext


def make_environment(
    locale: str, translations: Translations, templates_dir: Path = TEMPLATES_DIR
) -> Environment:
    """A Jinja2 environment for one locale: strict, autoescaping HTML, with gettext installed."""
    env = Environment(
        loader=FileSystemLoader(templates_dir),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=False,
        lstrip_blocks=True,
        auto_reload=False,
    )
    # Whitespace inside {% trans %} is collapsed; babel.cfg extracts with the same policy.
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]  # added by jinja2.ext.i18n at runtime
    # The extension's own `gettext` reaches the catalog through a second `Context.call` (its
    # checks of what the callee takes, for a plain method), and its `_` through a third: each
    # message looks up some thirty strings, a fifth of its rendering. Ours does the same in one.
    env.globals["gettext"] = env.globals["_"] = _newstyle_gettext(translations.gettext)
    formats = LocaleFormats(Locale.parse(locale), translations.gettext)
    env.filters.update(
        datetime=formats.datetime,
        date=formats.date,
        language=formats.language,
        languages=formats.languages,
        country=formats.country,
        price=formats.price,
        meeting_time=formats.meeting_time,
        minutes_until=_minutes,
        utc=_utc,
    )
    env.globals["unknown_code"] = _unknown_code
    return env


def template_variables(context: BaseModel, locale: str) -> dict[str, Any]:
    """The context's fields as template variables; URLs as text, `locale` as it is spoken."""
    variables: dict[str, Any] = {}
    for name in type(context).model_fields:
        value = getattr(context, name)
        variables[name] = value if value is None or _plain(value) else str(value)
    variables["locale"] = locale
    return variables


def _plain(value: object) -> bool:
    return isinstance(value, str | int | float | datetime | list | tuple)


def one_line(text: str) -> str:
    """Whitespace collapsed: a subject or an SMS cannot be split into headers or parts."""
    return " ".join(text.split())


def tidy_text(text: str) -> str:
    """Trailing spaces off, at most one blank line in a row, one final newline."""
    lines = [line.rstrip() for line in text.strip().splitlines()]
    tidy: list[str] = []
    for line in lines:
        if line or (tidy and tidy[-1]):
            tidy.append(line)
    return "\n".join(tidy) + "\n"


class Renderer:
    """Renders every trigger's messages in the patient's locale; build one per process."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR, locale_dir: Path = LOCALE_DIR) -> None:
        self._environments = {
            locale: make_environment(locale, load_translations(locale, locale_dir), templates_dir)
            for locale in SUPPORTED_LOCALES
        }
        for env in self._environments.values():
            for name in env.list_templates(extensions=("txt", "html")):
                env.get_template(name)  # layouts and macros too: a syntax error stops start-up
            for name in self.template_names():
                env.get_template(name)  # and every template a message needs exists

    @staticmethod
    def template_names() -> list[str]:
        """Every template the renderer uses (loaded and compiled at start-up)."""
        names = [f"{trigger}/{part}" for trigger in NotificationTrigger for part in EMAIL_PARTS]
        names += [f"{trigger}/{SMS_PART}" for trigger in NotificationTrigger]
        names += [CALENDAR_SUMMARY]
        names += [f"{trigger}/{CALENDAR_PART}" for trigger in CALENDAR_TRIGGERS]
        return [*names, *OPS_ALERT_TEMPLATES]

    def environment(self, locale: str) -> Environment:
        """The environment of a spoken locale (for tests and previews)."""
        return self._environments[resolve_locale(locale)]

    def render(
        self, trigger: NotificationTrigger, context: MessageContext, channel: NotificationChannel
    ) -> RenderedMessage:
        """The message announcing `trigger` on `channel`, in the context's locale (else English).

        E-mail gets a subject, a plain-text and an HTML body; SMS one short line (and the e-mail
        subject, for logs) that never carries medical details. Webhooks are built with
        `build_webhook_message`, which needs the case id and the time of the event.
        """
        expected = CONTEXT_MODELS[trigger]
        if type(context) is not expected:
            raise TypeError(f"{trigger} is rendered from {expected.__name__}, not {context!r}")
        locale = resolve_locale(context.locale)
        env = self._environments[locale]
        variables = template_variables(context, locale)

        def part(name: str) -> str:
            return env.get_template(f"{trigger}/{name}").render(variables)

        subject = one_line(part("subject.txt"))
        if channel is NotificationChannel.EMAIL:
            return RenderedMessage(
                subject,
                tidy_text(part("body.txt")),
                part("body.html"),
                attachments=self._calendar_file(context, env, variables, locale),
            )
        if channel is NotificationChannel.SMS:
            return RenderedMessage(subject, one_line(part(SMS_PART)))
        raise ValueError(f"{channel} messages are not rendered from templates")

    @staticmethod
    def _calendar_file(
        context: MessageContext, env: Environment, variables: dict[str, Any], locale: str
    ) -> tuple[Attachment, ...]:
        """The meeting's calendar file for the booking's e-mail (the entry to add), and for the
        cancellation's and the new times' (the withdrawal of the booked entry; none when no time
        was booked, as no calendar holds one)."""
        if isinstance(context, MeetingOfferedContext):
            if context.released_starts_at is None or context.released_ends_at is None:
                return ()
            # the context's validator keeps a released time with its calendar facts
            assert context.meeting_id is not None
            assert context.sequence is not None
            assert context.changed_at is not None
            entry = meeting_calendar.MeetingEntry(
                meeting_id=context.meeting_id,
                sequence=context.sequence,
                stamped_at=context.changed_at,
                starts_at=context.released_starts_at,
                ends_at=context.released_ends_at,
            )
            words = _calendar_words(context, env, variables, locale)
            content = meeting_calendar.meeting_cancellation(entry, words)
            return (_calendar_attachment("meeting-cancelled.ics", "CANCEL", content),)
        if not isinstance(context, MeetingBookedContext | MeetingCancelledContext):
            return ()
        if context.starts_at is None or context.ends_at is None:
            return ()  # cancelled before a time was booked: no calendar holds it
        words = _calendar_words(context, env, variables, locale)
        entry = meeting_calendar.MeetingEntry(
            meeting_id=context.meeting_id,
            sequence=context.sequence,
            stamped_at=context.changed_at,
            starts_at=context.starts_at,
            ends_at=context.ends_at,
        )
        if isinstance(context, MeetingCancelledContext):
            content = meeting_calendar.meeting_cancellation(entry, words)
            return (_calendar_attachment("meeting-cancelled.ics", "CANCEL", content),)
        link = str(context.join_url) if context.join_url is not None else None
        where = link or context.center_address
        assert where is not None  # a video meeting has its link, one in person its address
        content = meeting_calendar.meeting_request(entry, words, location=where, url=link)
        return (_calendar_attachment("meeting.ics", "REQUEST", content),)

    def render_ops_alert(self, alert: UnroutableOpsAlert) -> RenderedMessage:
        """The operators' e-mail that a case is unroutable: English, plain text, no names."""
        env = self._environments["en"]
        variables = template_variables(alert, "en")
        subject, body = (env.get_template(name).render(variables) for name in OPS_ALERT_TEMPLATES)
        return RenderedMessage(one_line(subject), tidy_text(body))


def _calendar_words(
    context: MessageContext, env: Environment, variables: dict[str, Any], locale: str
) -> meeting_calendar.MeetingWords:
    return meeting_calendar.MeetingWords(
        locale=locale,
        summary=one_line(env.get_template(CALENDAR_SUMMARY).render(variables)),
        description=tidy_text(
            env.get_template(f"{context.trigger}/{CALENDAR_PART}").render(variables)
        ).rstrip("\n"),
    )


def _calendar_attachment(filename: str, method: str, content: bytes) -> Attachment:
    return Attachment(
        filename=filename,
        media_type=meeting_calendar.MEDIA_TYPE,
        content=content,
        parameters=(("method", method),),
    )


TRIGGER_STATUS: Mapping[NotificationTrigger, CaseStatus | None] = {
    NotificationTrigger.CASE_SUBMITTED: CaseStatus.SUBMITTED,
    NotificationTrigger.DOCUMENT_REJECTED: None,
    NotificationTrigger.TRANSLATION_REQUIRED: CaseStatus.ACTION_REQUIRED,
    NotificationTrigger.DOCUMENT_UNREADABLE: CaseStatus.ACTION_REQUIRED,
    NotificationTrigger.CASE_READY: CaseStatus.READY,
    NotificationTrigger.REFERRAL_REQUESTED: CaseStatus.REFERRED,
    NotificationTrigger.REFERRAL_ACCEPTED: CaseStatus.ACCEPTED,
    NotificationTrigger.REFERRAL_DECLINED: CaseStatus.REFERRED,
    NotificationTrigger.INFO_REQUESTED: CaseStatus.INFORMATION_REQUESTED,
    NotificationTrigger.INFO_REMINDER: CaseStatus.INFORMATION_REQUESTED,
    NotificationTrigger.INFO_EXPIRED: CaseStatus.REFERRED,
    NotificationTrigger.INFORMATION_SENT: None,
    NotificationTrigger.SHIPMENT_RECEIVED: None,
    NotificationTrigger.OPINION_DELIVERED: CaseStatus.OPINION_DELIVERED,
    NotificationTrigger.FOLLOW_UP_ANSWERED: None,
    NotificationTrigger.CENTERS_PROPOSED: CaseStatus.CHOOSING_CENTER,
    NotificationTrigger.MEETING_OFFERED: None,
    NotificationTrigger.MEETING_BOOKED: None,
    NotificationTrigger.MEETING_CANCELLED: None,
    NotificationTrigger.MEETING_REMINDER: None,
    NotificationTrigger.MEETING_MISSED: None,
    NotificationTrigger.FURTHER_OPINION_REQUESTED: CaseStatus.READY,
    NotificationTrigger.FURTHER_OPINION_UNAVAILABLE: CaseStatus.OPINION_DELIVERED,
    NotificationTrigger.CASE_UNROUTABLE: CaseStatus.UNROUTABLE,
    NotificationTrigger.CASE_WITHDRAWN: CaseStatus.WITHDRAWN,
}
"""The case status a trigger implies; None where the trigger alone does not tell it (a refused
upload leaves the case where it was; an answered request puts the case back where it was when the
center asked, offered or accepted; a received shipment, an answered follow-up question or anything
about the consultation meeting changes nothing: the opinion is delivered either way). A further
opinion asked for makes the case ready to be routed again; one that cannot be had leaves the case
with the opinion it has.
"""

ACTION_REQUIRED = frozenset(
    {
        NotificationTrigger.DOCUMENT_REJECTED,
        NotificationTrigger.TRANSLATION_REQUIRED,
        NotificationTrigger.DOCUMENT_UNREADABLE,
        NotificationTrigger.INFO_REQUESTED,
        NotificationTrigger.INFO_REMINDER,
        NotificationTrigger.CENTERS_PROPOSED,
        NotificationTrigger.MEETING_OFFERED,
    }
)
"""The triggers that ask the patient to do something."""


class WebhookPayload(BaseModel):
    """The JSON body a partner front end receives: what happened to a case, without contact data.

    `notification_id` is stable across retries: a receiver uses it to ignore a repeated delivery.
    `facts` holds the trigger's `webhook_facts` only: codes, counts, center names, prices and dates,
    never the patient's name, a file name, a center's message or the patient's answer (the front
    end reads those from the API).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["referrals.case.notification.v1"] = "referrals.case.notification.v1"
    notification_id: UUID
    case_id: UUID
    case_ref: str
    trigger: NotificationTrigger
    case_status: CaseStatus | None = Field(description="The status the trigger implies, if any")
    action_required: bool = Field(description="Whether the patient has something to do")
    facts: dict[str, Any]
    occurred_at: AwareDatetime = Field(description="When the event behind the trigger happened")


def build_webhook_payload(
    trigger: NotificationTrigger,
    context: MessageContext,
    *,
    case_id: UUID,
    notification_id: UUID,
    occurred_at: datetime,
) -> WebhookPayload:
    """The webhook payload announcing `trigger` for a case."""
    if type(context) is not CONTEXT_MODELS[trigger]:
        raise TypeError(f"{trigger} is not announced from {type(context).__name__}")
    facts = context.model_dump(mode="json", include=set(context.webhook_facts))
    return WebhookPayload(
        notification_id=notification_id,
        case_id=case_id,
        case_ref=context.case_ref,
        trigger=trigger,
        case_status=TRIGGER_STATUS[trigger],
        action_required=trigger in ACTION_REQUIRED,
        facts=facts,
        occurred_at=occurred_at,
    )


def build_webhook_message(
    trigger: NotificationTrigger,
    context: MessageContext,
    *,
    case_id: UUID,
    notification_id: UUID,
    occurred_at: datetime,
) -> RenderedMessage:
    """The webhook as a message for `WebhookChannel`: the JSON body as `text`, the trigger as
    `subject` (sent as the `X-Referrals-Event` header), no HTML."""
    payload = build_webhook_payload(
        trigger,
        context,
        case_id=case_id,
        notification_id=notification_id,
        occurred_at=occurred_at,
    )
    return RenderedMessage(subject=str(trigger), text=payload.model_dump_json())


__all__ = [
    "CALENDAR_TRIGGERS",
    "FALLBACK_LOCALE",
    "SUPPORTED_LOCALES",
    "Attachment",
    "LocaleFormats",
    "RenderedMessage",
    "Renderer",
    "UnknownCode",
    "WebhookPayload",
    "build_webhook_message",
    "build_webhook_payload",
    "load_translations",
    "make_environment",
    "resolve_locale",
]
