"""Email: templates (HTML + text, organization branding), threading headers, SMTP.

Every email of a ticket belongs to one thread: its `Message-ID` is
`<ticket-{ticket_id}-{email_id}@{domain}>` and `In-Reply-To`/`References` name the ticket's
root `<ticket-{ticket_id}@{domain}>`, so mail clients group them even though the root itself is
never sent. The id comes from the stored row, so a resend after a crash carries the same
`Message-ID` and receiving systems can drop the copy.

Most emails are stored rendered. An email that carries a secret (a password reset link) is
stored *sealed* instead: `body_text` holds its template context encrypted with the server's
`SecretBox` (`sealed:v1:…`), `body_html` is empty, and the bodies are rendered in memory when
it is sent (`build_message(..., secrets=)`), so the secret never rests in plaintext.
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import jinja2

from servicedesk.config import Settings
from servicedesk.core.clock import utc_now
from servicedesk.core.security import InvalidTokenError, SecretBox
from servicedesk.models import Email

DEFAULT_BRAND_COLOR = "#2563eb"
SEALED_PREFIX = "sealed:v1:"
_HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_SPACE = re.compile(r"\s+")

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("servicedesk.notifications", "templates"),
    # HTML templates escape every value; text templates are plain text and escape nothing.
    autoescape=jinja2.select_autoescape(
        enabled_extensions=("html",), disabled_extensions=("txt",), default=True
    ),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    # The templates ship with the package: no stat() of every file on every render (a
    # fan-out renders thousands).
    auto_reload=False,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class Branding:
    """How an organization's emails look: its name, colour and support address."""

    name: str
    color: str
    support_email: str | None

    @classmethod
    def of(cls, name: str, settings: dict[str, Any]) -> Branding:
        color = settings.get("brand_color")
        support = settings.get("support_email")
        return cls(
            name=name,
            color=color
            if isinstance(color, str) and _HEX_COLOR.match(color)
            else DEFAULT_BRAND_COLOR,
            support_email=header_text(support) if isinstance(support, str) and support else None,
        )


@dataclass(frozen=True)
class Rendered:
    text: str
    html: str


def header_text(value: str, limit: int = 300) -> str:
    """One line for a header: no line breaks (header injection), collapsed space, cut."""
    line = _SPACE.sub(" ", value).strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


def render(template: str, context: dict[str, Any]) -> Rendered:
    """The text and HTML bodies of a template (`templates/{template}.txt` and `.html`)."""
    return Rendered(
        text=_env.get_template(f"{template}.txt").render(context),
        html=_env.get_template(f"{template}.html").render(context),
    )


def mail_domain(settings: Settings) -> str:
    if settings.mail_domain:
        return settings.mail_domain
    _, _, domain = settings.smtp_from.rpartition("@")
    return domain.strip(" >") or "localhost"


def thread_root(ticket_id: uuid.UUID, domain: str) -> str:
    return f"<ticket-{ticket_id}@{domain}>"


def message_id_for(email_id: uuid.UUID, ticket_id: uuid.UUID | None, domain: str) -> str:
    if ticket_id is not None:
        return f"<ticket-{ticket_id}-{email_id}@{domain}>"
    return f"<notification-{email_id}@{domain}>"


def seal(secrets: SecretBox, context: dict[str, Any], *, not_after: datetime | None) -> str:
    """The stored `body_text` of a sealed email: its template context, encrypted.

    `context` must be JSON-serialisable, with `brand` as a `Branding`. After `not_after` the
    email is not sent any more (its content is useless then, e.g. an expired link).
    """
    sealed = {
        "context": {**context, "brand": dataclasses.asdict(context["brand"])},
        "not_after": not_after.isoformat() if not_after else None,
    }
    return SEALED_PREFIX + secrets.encrypt(json.dumps(sealed))


def is_sealed(email: Email) -> bool:
    return email.body_text.startswith(SEALED_PREFIX)


def unseal(email: Email, secrets: SecretBox | None, *, now: datetime) -> Rendered:
    """Render a sealed email's bodies (in memory only).

    Raises ValueError when it cannot be sent: no key, a key that cannot decrypt it (the
    server secret changed), or its `not_after` has passed. The send step treats that as a
    permanent failure.
    """
    if secrets is None:
        raise ValueError("a sealed email needs the server secret to be sent")
    try:
        sealed = json.loads(secrets.decrypt(email.body_text.removeprefix(SEALED_PREFIX)))
    except (InvalidTokenError, ValueError) as exc:
        raise ValueError("the sealed email cannot be decrypted with the server secret") from exc
    not_after = sealed.get("not_after")
    if not_after and datetime.fromisoformat(not_after) <= now:
        raise ValueError("expired before it could be sent (its link is no longer valid)")
    context = dict(sealed["context"])
    context["brand"] = Branding(**context["brand"])
    return render(email.template, context)


def build_message(
    email: Email,
    settings: Settings,
    *,
    secrets: SecretBox | None = None,
    now: datetime | None = None,
) -> EmailMessage:
    """The MIME message of a stored email: the same headers every time it is (re)sent.

    A sealed email is rendered here with `secrets` (see `unseal`); the result is not stored.
    """
    bodies = (
        unseal(email, secrets, now=now or utc_now())
        if is_sealed(email)
        else Rendered(text=email.body_text, html=email.body_html)
    )
    message = EmailMessage()
    message["From"] = formataddr((header_text(email.from_name, 100), settings.smtp_from))
    message["To"] = email.to_address
    if email.reply_to:
        message["Reply-To"] = email.reply_to
    message["Subject"] = header_text(email.subject)
    message["Date"] = format_datetime(utc_now())
    message["Message-ID"] = email.message_id
    if email.in_reply_to:
        message["In-Reply-To"] = email.in_reply_to
    if email.references:
        message["References"] = email.references
    # RFC 3834: an automatic message; well-behaved auto-responders stay quiet.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(bodies.text)
    message.add_alternative(bodies.html, subtype="html")
    return message


class DeliveryError(Exception):
    """The SMTP server did not take a message.

    `permanent`: retrying cannot help (a 5xx answer). `connection`: the server could not be
    reached or dropped the connection, so the other queued messages wait too.
    """

    def __init__(self, message: str, *, permanent: bool, connection: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.connection = connection


@dataclass(frozen=True)
class SmtpTarget:
    hostname: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool | None
    """True: require STARTTLS; None: use it when offered; False: never."""

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        implicit_tls = parts.scheme == "smtps"
        mode = (parse_qs(parts.query).get("starttls") or ["auto"])[0]
        return cls(
            hostname=parts.hostname or "localhost",
            port=parts.port or (465 if implicit_tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=implicit_tls,
            start_tls=None if implicit_tls else {"require": True, "off": False}.get(mode),
        )


class Mailer:
    """One SMTP connection for a run of sends, opened on first use and reopened after errors."""

    def __init__(self, settings: Settings) -> None:
        if not settings.smtp_url:
            raise RuntimeError("SMTP_URL is not set")
        self.settings = settings
        self.target = SmtpTarget.parse(settings.smtp_url)
        self._client: aiosmtplib.SMTP | None = None

    async def __aenter__(self) -> Mailer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        t = self.target
        client = aiosmtplib.SMTP(
            hostname=t.hostname,
            port=t.port,
            username=t.username,
            password=t.password,
            use_tls=t.use_tls,
            start_tls=t.start_tls,
            timeout=self.settings.smtp_timeout_seconds,
        )
        await client.connect()
        self._client = client
        return client

    async def send(self, message: EmailMessage, *, to: str) -> None:
        """Hand one message to the server; raises DeliveryError unless it was accepted."""
        try:
            client = await self._connected()
            await client.send_message(message, sender=self.settings.smtp_from, recipients=[to])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            await self.close()  # the session may be mid-transaction: start the next one clean
            permanent = all(r.code >= 500 for r in exc.recipients)
            raise DeliveryError(f"recipient refused: {exc}", permanent=permanent) from exc
        except aiosmtplib.SMTPSenderRefused as exc:
            await self.close()
            raise DeliveryError(f"sender refused: {exc}", permanent=False) from exc
        except aiosmtplib.SMTPDataError as exc:
            await self.close()
            raise DeliveryError(f"message refused: {exc}", permanent=exc.code >= 500) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await self.close()
            raise DeliveryError(
                f"{type(exc).__name__}: {exc}", permanent=False, connection=True
            ) from exc

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()
