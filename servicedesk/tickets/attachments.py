"""Attachments: files on tickets and comments, typed by content, stored under random keys.

Rules:

- Whoever may add to a ticket may attach to it: its requester, agents and admins who see it
  (managers only read). A file on a comment belongs to that comment: only its author may
  attach, within the comment edit window, and the file inherits the comment's `is_internal`.
  Files on the ticket itself are public. Closed and rejected tickets take internal files only.
- The type comes from the bytes (`core.filetypes.sniff`); the client's name and Content-Type
  decide nothing. The name is kept for the download, sanitised, with a fitting extension
  appended when the one given does not match the content.
- Requesters never see internal files; files of deleted comments disappear with the comment.
- Downloads go through signed links (`DownloadLinks`) bound to organization, attachment and
  user, valid `SERVICEDESK_DOWNLOAD_LINK_SECONDS`; using one re-checks that the user can still
  see the ticket and the file.
- Deleting is soft (the body stays in storage), by the uploader or an admin.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from anyio import to_thread
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import Message, Receive

from servicedesk.audit import service as audit
from servicedesk.core import events, filetypes, storage
from servicedesk.core.actor import SYSTEM
from servicedesk.core.clock import utc_now
from servicedesk.core.errors import Forbidden, NotFound, PayloadTooLarge, Unprocessable
from servicedesk.core.runtime import Runtime
from servicedesk.core.storage import Storage
from servicedesk.models import Attachment, Comment, Role, Ticket, TicketStatus
from servicedesk.tenancy.service import Tenant
from servicedesk.tickets import comments as comments_service
from servicedesk.tickets import service as tickets
from servicedesk.tickets.auth import Viewer
from servicedesk.tickets.repository import AttachmentRepository, CommentRepository

FILENAME_MAX = 255
FALLBACK_NAME = "file"
# Path separators and the characters Windows forbids in names (this also removes `<`, `>` and
# `"`, so a name cannot carry markup wherever it is shown).
_FORBIDDEN_CHARS = re.compile(r'[\\/:*?"<>|]')
_WINDOWS_DEVICES = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)


class AttachmentNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("Attachment not found.")


# File names --------------------------------------------------------------------------------


def sanitize_filename(raw: str | None) -> str:
    """A safe display and download name from what the client sent.

    Only the last path component is kept (either separator), control and format characters
    (NUL, CR/LF, bidi overrides, zero-width marks) are removed, characters that are illegal in
    file names become `_`, whitespace collapses to single spaces, leading dots and trailing dots
    and spaces go, Windows device names get a `_` prefix, and the result is at most 255
    characters with its extension kept. Nothing usable left: `file`.
    """
    name = unicodedata.normalize("NFC", raw or "")
    name = "".join(" " if ch.isspace() else ch for ch in name)
    name = "".join(ch for ch in name if unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co"})
    name = re.split(r"[\\/]", name)[-1]
    name = _FORBIDDEN_CHARS.sub("_", name)
    name = " ".join(name.split()).lstrip(". ").rstrip(". ")
    if not name:
        return FALLBACK_NAME
    if _WINDOWS_DEVICES.match(name):
        name = "_" + name
    return _truncate(name)


def _truncate(name: str, limit: int = FILENAME_MAX) -> str:
    if len(name) <= limit:
        return name
    stem, dot, ext = name.rpartition(".")
    if dot and stem and len(ext) <= 16:
        return stem[: limit - len(ext) - 1].rstrip(". ") + "." + ext
    return name[:limit].rstrip(". ")


def download_name(raw: str | None, kind: filetypes.FileType) -> str:
    """The sanitised name, with the type's extension appended unless it already fits."""
    name = sanitize_filename(raw)
    if filetypes.fits(name, kind):
        return name
    ext = kind.extensions[0]
    return _truncate(name[: FILENAME_MAX - len(ext)] + ext)


# Signed download links ---------------------------------------------------------------------


@dataclass(frozen=True)
class LinkClaims:
    organization_id: uuid.UUID
    attachment_id: uuid.UUID
    user_id: uuid.UUID


class LinkExpired(Exception):
    def __init__(self, claims: LinkClaims) -> None:
        super().__init__("download link expired")
        self.claims = claims


class LinkInvalid(Exception):
    """Malformed, tampered with, or signed with another key."""


class DownloadLinks:
    """Signs and checks download tokens: itsdangerous (HMAC + timestamp) over a key derived
    from the server secret, so a link cannot be forged, altered or used after its lifetime."""

    SALT = "servicedesk.attachment-download.v1"

    def __init__(self, secret: str) -> None:
        key = hashlib.sha256(b"servicedesk-download-links:" + secret.encode()).hexdigest()
        self._serializer = URLSafeTimedSerializer(key, salt=self.SALT)

    def issue(
        self,
        *,
        organization_id: uuid.UUID,
        attachment_id: uuid.UUID,
        user_id: uuid.UUID,
        lifetime_seconds: int,
    ) -> tuple[str, datetime]:
        token = self._serializer.dumps(
            {"o": str(organization_id), "a": str(attachment_id), "u": str(user_id)}
        )
        return token, utc_now() + timedelta(seconds=lifetime_seconds)

    @staticmethod
    def _claims(payload: object) -> LinkClaims:
        if not isinstance(payload, dict):
            raise LinkInvalid("payload is not an object")
        try:
            return LinkClaims(
                organization_id=uuid.UUID(str(payload["o"])),
                attachment_id=uuid.UUID(str(payload["a"])),
                user_id=uuid.UUID(str(payload["u"])),
            )
        except (KeyError, ValueError) as exc:
            raise LinkInvalid("payload has the wrong shape") from exc

    def verify(self, token: str, *, lifetime_seconds: int) -> LinkClaims:
        """The claims of a genuine, unexpired token; `LinkExpired` / `LinkInvalid` otherwise."""
        try:
            payload = self._serializer.loads(token, max_age=lifetime_seconds)
        except SignatureExpired as exc:
            # The signature was good, only the time ran out: say so (to its own user only).
            if not isinstance(exc.payload, bytes):
                raise LinkInvalid("unreadable payload") from exc
            try:
                expired = self._serializer.load_payload(exc.payload)
            except BadData as inner:
                raise LinkInvalid("unreadable payload") from inner
            raise LinkExpired(self._claims(expired)) from exc
        except BadData as exc:
            raise LinkInvalid(str(exc)) from exc
        return self._claims(payload)


def download_url(tenant: Tenant, token: str) -> str:
    """A relative URL that names the tenant in its path, so it works from a browser too."""
    return f"/t/{tenant.slug}/api/v1/attachments/download?token={token}"


_LINKS_KEY = "attachments.download_links"


def links_of(runtime: Runtime) -> DownloadLinks:
    """The process's link signer, keyed from the server secret (built once)."""
    links = runtime.extras.get(_LINKS_KEY)
    if not isinstance(links, DownloadLinks):
        links = DownloadLinks(runtime.settings.resolved_secret_key())
        runtime.extras[_LINKS_KEY] = links
    return links


def link_for(
    runtime: Runtime, tenant: Tenant, user_id: uuid.UUID, attachment_id: uuid.UUID
) -> tuple[str, datetime]:
    """A download link for one user, and when it expires."""
    token, expires = links_of(runtime).issue(
        organization_id=tenant.id,
        attachment_id=attachment_id,
        user_id=user_id,
        lifetime_seconds=runtime.settings.download_link_seconds,
    )
    return download_url(tenant, token), expires


def limited_receive(receive: Receive, *, budget: int, limit: int) -> Receive:
    """`receive` that stops the request once more than `budget` body bytes have arrived
    (`limit` is the per-file limit named in the 413)."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > budget:
                raise payload_too_large(limit)
        return message

    return wrapped


# Queries -----------------------------------------------------------------------------------


# Rules -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """A received file: the name the client gave and the bytes."""

    filename: str | None
    data: bytes


@dataclass(frozen=True)
class Inspected:
    kind: filetypes.FileType
    sha256: str
    size: int


def payload_too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Files can be at most {max_bytes} bytes ({max_bytes / 1048576:.1f} MiB).",
        extra={"max_bytes": max_bytes},
    )


def check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise payload_too_large(max_bytes)
    if size == 0:
        raise Unprocessable(
            "The file is empty.",
            code="empty_file",
            errors=[{"loc": ["body", "file"], "msg": "empty file", "type": "empty_file"}],
        )


def _inspect(data: bytes) -> Inspected:
    return Inspected(filetypes.sniff(data), hashlib.sha256(data).hexdigest(), len(data))


async def inspect_upload(upload: Upload, *, max_bytes: int) -> Inspected:
    """Size limits, then the content type and SHA-256 (in a thread: up to 10 MiB of work)."""
    check_size(len(upload.data), max_bytes)
    return await to_thread.run_sync(_inspect, upload.data)


def _visible(viewer: Viewer, attachment: Attachment) -> bool:
    return viewer.sees_internal or not attachment.is_internal


async def _target_comment(
    session: AsyncSession, viewer: Viewer, tenant: Tenant, ticket: Ticket, comment_id: uuid.UUID
) -> Comment:
    comment = await CommentRepository(session).get(ticket.id, comment_id)
    if comment is None or (comment.is_internal and not viewer.sees_internal):
        raise NotFound("Comment not found.")
    if comment.author_id != viewer.user.id:
        raise Forbidden("Only the author can attach files to a comment.", code="not_author")
    if utc_now() - comment.created_at > comments_service.edit_window(tenant):
        raise Unprocessable(
            "Files can only be added to a comment shortly after it was written; "
            "add them to a new reply instead.",
            code="edit_window_passed",
        )
    return comment


async def add_attachment(
    session: AsyncSession,
    viewer: Viewer,
    tenant: Tenant,
    store: Storage,
    ticket_id: uuid.UUID,
    upload: Upload,
    inspected: Inspected,
    *,
    comment_id: uuid.UUID | None = None,
) -> Attachment:
    """Check who may attach where, store the body under a random key, add the row + audit."""
    ticket = await tickets.access_ticket(session, viewer, ticket_id)
    if not viewer.can_work and viewer.user.role != Role.REQUESTER:
        raise Forbidden("Managers can read tickets but not add files.", code="read_only")
    comment = None
    if comment_id is not None:
        comment = await _target_comment(session, viewer, tenant, ticket, comment_id)
    is_internal = comment.is_internal if comment is not None else False
    if not is_internal and ticket.status in (TicketStatus.CLOSED, TicketStatus.REJECTED):
        raise Unprocessable(
            f"The ticket is {ticket.status}; open a new ticket instead.", code="ticket_closed"
        )
    key = storage.new_key(str(tenant.id))
    attachment = Attachment(
        organization_id=tenant.id,
        ticket_id=ticket.id,
        comment_id=comment.id if comment is not None else None,
        uploader_id=viewer.user.id,
        filename=download_name(upload.filename, inspected.kind),
        content_type=inspected.kind.mime,
        size=inspected.size,
        sha256=inspected.sha256,
        storage_key=key,
        is_internal=is_internal,
    )
    # The body goes first: a row never points at nothing. If the transaction fails later, an
    # unreferenced body is left under a random key, readable by no one.
    await store.put(key, upload.data)
    try:
        session.add(attachment)
        await session.flush()
    except BaseException:
        await store.delete(key)
        raise
    await audit.record(
        session,
        organization_id=tenant.id,
        actor=tickets.actor_of(viewer),
        action="attachment.added",
        table="attachments",
        record_id=attachment.id,
        new={
            "ticket_id": ticket.id,
            "comment_id": attachment.comment_id,
            "filename": attachment.filename,
            "content_type": attachment.content_type,
            "size": attachment.size,
            "sha256": attachment.sha256,
            "is_internal": attachment.is_internal,
        },
    )
    events.emit(
        session,
        organization_id=tenant.id,
        event_type="attachment.added",
        actor=tickets.actor_of(viewer),
        payload={
            **tickets.ticket_ref(ticket),
            "attachment_id": attachment.id,
            "comment_id": attachment.comment_id,
            "filename": attachment.filename,
            "is_internal": attachment.is_internal,
        },
    )
    return attachment


async def list_attachments(
    session: AsyncSession, viewer: Viewer, ticket_id: uuid.UUID
) -> list[Attachment]:
    ticket = await tickets.access_ticket(session, viewer, ticket_id)
    return await AttachmentRepository(session).list(
        ticket.id, include_internal=viewer.sees_internal
    )


async def access_attachment(
    session: AsyncSession,
    viewer: Viewer,
    ticket_id: uuid.UUID,
    attachment_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> Attachment:
    """A live attachment of a ticket the viewer sees, or 404 alike for missing and hidden."""
    ticket = await tickets.access_ticket(session, viewer, ticket_id)
    attachment = await AttachmentRepository(session).get(
        attachment_id,
        ticket_id=ticket.id,
        include_internal=viewer.sees_internal,
        for_update=for_update,
    )
    if attachment is None:
        raise AttachmentNotFound()
    return attachment


async def delete_attachment(
    session: AsyncSession,
    viewer: Viewer,
    tenant: Tenant,
    ticket_id: uuid.UUID,
    attachment_id: uuid.UUID,
) -> None:
    """Soft delete by the uploader or an admin; the body stays in storage."""
    attachment = await access_attachment(session, viewer, ticket_id, attachment_id, for_update=True)
    if attachment.uploader_id != viewer.user.id and viewer.user.role != Role.ADMIN:
        raise Forbidden("Only the uploader or an admin can delete a file.", code="not_uploader")
    attachment.deleted_at = utc_now()
    await session.flush()
    await audit.record(
        session,
        organization_id=tenant.id,
        actor=tickets.actor_of(viewer),
        action="attachment.deleted",
        table="attachments",
        record_id=attachment.id,
        old={
            "filename": attachment.filename,
            "sha256": attachment.sha256,
            "is_internal": attachment.is_internal,
        },
        new={"deleted_at": attachment.deleted_at, "ticket_id": attachment.ticket_id},
    )


async def access_download(
    session: AsyncSession,
    viewer: Viewer,
    tenant: Tenant,
    links: DownloadLinks,
    token: str,
    *,
    lifetime_seconds: int,
) -> Attachment:
    """The attachment a link names, if the link is genuine, current, the caller's own, and
    the caller can still see the ticket and the file.

    Answers: forged or malformed → 404; another organization's link → 404 (as if missing);
    another user's link in the same organization → 403 `download_link_not_yours`; an expired
    link of the caller → 403 `download_link_expired`; lost visibility or deleted → 404.
    """
    try:
        claims = links.verify(token, lifetime_seconds=lifetime_seconds)
        expired = False
    except LinkInvalid as exc:
        raise NotFound("The download link is invalid.", code="download_link_invalid") from exc
    except LinkExpired as exc:
        claims, expired = exc.claims, True
    if claims.organization_id != tenant.id:
        raise AttachmentNotFound()
    if claims.user_id != viewer.user.id:
        raise Forbidden(
            "This download link was issued to another user; open the file from the ticket.",
            code="download_link_not_yours",
        )
    if expired:
        raise Forbidden(
            "The download link has expired; open the file from the ticket again.",
            code="download_link_expired",
        )
    attachment = await AttachmentRepository(session).get(
        claims.attachment_id, include_internal=viewer.sees_internal
    )
    if attachment is None:
        raise AttachmentNotFound()
    # The ticket must still be visible to this user (assignment, department, requester).
    try:
        await tickets.access_ticket(session, viewer, attachment.ticket_id)
    except NotFound as exc:
        raise AttachmentNotFound() from exc
    if not _visible(viewer, attachment):
        raise AttachmentNotFound()
    return attachment


# Purge --------------------------------------------------------------------------------------

PURGE_BATCH = 200


async def purge_deleted(
    session: AsyncSession, store: Storage, *, older_than: datetime, limit: int = PURGE_BATCH
) -> int:
    """Remove the stored files (and rows) of attachments deleted before `older_than`: deleted
    themselves, or belonging to a deleted comment. Runs in a system session (all
    organizations); each removal is audited as `attachment.purged` by the system.

    The file goes first, then the row, in the caller's transaction: if the transaction fails,
    the rows stay (still deleted, never served) and the next run deletes their files again,
    which is a no-op for a file already gone.
    """
    candidates = await AttachmentRepository(session).deleted_before(older_than, limit=limit)
    for attachment in candidates:
        await store.delete(attachment.storage_key)
        await audit.record(
            session,
            organization_id=attachment.organization_id,
            actor=SYSTEM,
            action="attachment.purged",
            table="attachments",
            record_id=attachment.id,
            old={
                "filename": attachment.filename,
                "sha256": attachment.sha256,
                "size": attachment.size,
                "ticket_id": attachment.ticket_id,
                "deleted_at": attachment.deleted_at,
            },
        )
        await session.delete(attachment)
    await session.flush()
    return len(candidates)
