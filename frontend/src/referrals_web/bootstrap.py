"""Bootstrap: the web app's runtime (its stores, the platform's clients, the mailers and
texters), built from settings once per process, or in memory for tests. Pages get it from the
request; nothing here imports the app or its pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from referrals_common.db import Database
from referrals_web.config import WebSettings
from referrals_web.mail import CodeMailer, SmtpCodeMailer
from referrals_web.models import staff_login_codes
from referrals_web.one_time_codes import SendLimit
from referrals_web.platform import Platform
from referrals_web.realms import is_console, is_ops
from referrals_web.rendering import Renderer
from referrals_web.repository import (
    CaseDirectory,
    CenterKeyStore,
    ConsoleAudit,
    LoginCodeStore,
    MemoryCaseDirectory,
    MemoryCenterKeyStore,
    MemoryConsoleAudit,
    MemoryLoginCodeStore,
    MemoryOpsAudit,
    MemorySessionStore,
    MemoryStaffDirectory,
    OpsAudit,
    PostgresCaseDirectory,
    PostgresCenterKeyStore,
    PostgresConsoleAudit,
    PostgresLoginCodeStore,
    PostgresOpsAudit,
    PostgresSessionStore,
    PostgresStaffDirectory,
    SessionStore,
    StaffDirectory,
)
from referrals_web.sessions import OPS, STAFF, Sessions
from referrals_web.sms import CodeTexter, texter_from_settings
from referrals_web.staff import CenterKeys


@dataclass
class Runtime:
    settings: WebSettings
    platform: Platform
    sessions: Sessions
    codes: LoginCodeStore
    directory: CaseDirectory
    mailer: CodeMailer
    renderer: Renderer
    staff_sessions: Sessions
    staff: StaffDirectory
    staff_codes: LoginCodeStore
    center_keys: CenterKeys
    console_audit: ConsoleAudit
    ops_sessions: Sessions
    ops_audit: OpsAudit
    code_sends: SendLimit
    """How many patient sign-in codes each case may be sent (`login_codes_per_hour`)."""
    db: Database | None = None
    texter: CodeTexter | None = None
    """Sign-in codes by text message; None when no SMS account is configured."""

    def sessions_of(self, path: str) -> Sessions:
        """The console's sessions for /center…, the ops screen's for /ops…, the patients' for
        every other page."""
        if is_console(path):
            return self.staff_sessions
        if is_ops(path):
            return self.ops_sessions
        return self.sessions

    @property
    def htmx(self) -> bool:
        vendor = self.settings.vendor_dir
        return bool(vendor and (vendor / "htmx.min.js").is_file())

    async def close(self) -> None:
        await self.platform.close()
        close_texter = getattr(self.texter, "aclose", None)
        if close_texter is not None:
            await close_texter()
        if self.db is not None:
            await self.db.dispose()


def build_runtime(
    settings: WebSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    session_store: SessionStore | None = None,
    codes: LoginCodeStore | None = None,
    directory: CaseDirectory | None = None,
    mailer: CodeMailer | None = None,
    renderer: Renderer | None = None,
    staff: StaffDirectory | None = None,
    staff_codes: LoginCodeStore | None = None,
    center_keys: CenterKeyStore | None = None,
    console_audit: ConsoleAudit | None = None,
    ops_audit: OpsAudit | None = None,
    texter: CodeTexter | None = None,
) -> Runtime:
    """The runtime of one process; the stores are PostgreSQL unless given (tests give memory)."""
    given = (
        session_store,
        codes,
        directory,
        staff,
        staff_codes,
        center_keys,
        console_audit,
        ops_audit,
    )
    db = Database(settings.postgres) if any(store is None for store in given) else None

    def database() -> Database:
        assert db is not None  # made above, as a store is missing
        return db

    secret = settings.session_secret.get_secret_value()
    store = session_store or PostgresSessionStore(database())
    idle = timedelta(minutes=settings.session_idle_minutes)
    return Runtime(
        settings=settings,
        platform=Platform(settings, transport=transport),
        sessions=Sessions(store, secret, idle=idle),
        codes=codes or PostgresLoginCodeStore(database()),
        directory=directory or PostgresCaseDirectory(database()),
        mailer=mailer or SmtpCodeMailer(settings.smtp),
        renderer=renderer or Renderer(),
        staff_sessions=Sessions(store, secret, idle=idle, realm=STAFF, default_locale="en"),
        staff=staff or PostgresStaffDirectory(database()),
        staff_codes=staff_codes or PostgresLoginCodeStore(database(), staff_login_codes),
        center_keys=CenterKeys(center_keys or PostgresCenterKeyStore(database()), secret),
        console_audit=console_audit or PostgresConsoleAudit(database()),
        ops_sessions=Sessions(store, secret, idle=idle, realm=OPS, default_locale="en"),
        ops_audit=ops_audit or PostgresOpsAudit(database()),
        code_sends=SendLimit(settings.login_codes_per_hour),
        db=db,
        texter=texter
        or texter_from_settings(
            settings.sms, settings.environment, settings.outbound_allowed_targets
        ),
    )


def memory_runtime(settings: WebSettings, **kwargs: Any) -> Runtime:
    """A runtime whose stores are in memory (tests, a demo without a database)."""
    return build_runtime(
        settings,
        session_store=kwargs.pop("session_store", MemorySessionStore()),
        codes=kwargs.pop("codes", MemoryLoginCodeStore()),
        directory=kwargs.pop("directory", MemoryCaseDirectory()),
        staff=kwargs.pop("staff", MemoryStaffDirectory()),
        staff_codes=kwargs.pop("staff_codes", MemoryLoginCodeStore()),
        center_keys=kwargs.pop("center_keys", MemoryCenterKeyStore()),
        console_audit=kwargs.pop("console_audit", MemoryConsoleAudit()),
        ops_audit=kwargs.pop("ops_audit", MemoryOpsAudit()),
        **kwargs,
    )
