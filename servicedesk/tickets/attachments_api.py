"""HTTP routes of attachments: multipart upload, listing with signed links, delete, download.

An upload's body is read before the request's database transaction opens (the dependency
`receive_upload` comes first in the route's signature), so a slow client holds no connection
while it sends; a stateless check of the access token runs before that, so anonymous clients
cannot make the server read bodies. The size limit is enforced on the bytes as they arrive,
whatever Content-Length says.
"""

from __future__ import annotations

import logging
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from servicedesk.accounts.auth import ACCESS_COOKIE, bearer_token
from servicedesk.core import idempotency
from servicedesk.core.csrf import check_csrf
from servicedesk.core.errors import (
    BadRequest,
    NotFound,
    Unauthorized,
    Unprocessable,
)
from servicedesk.core.runtime import Runtime, get_runtime
from servicedesk.core.security import InvalidTokenError
from servicedesk.core.storage import StorageKeyNotFound
from servicedesk.models import Attachment
from servicedesk.tenancy.deps import CurrentTenant, TenantSession
from servicedesk.tenancy.service import Tenant
from servicedesk.tickets import attachments
from servicedesk.tickets.attachments import links_of
from servicedesk.tickets.auth import CurrentViewer, Viewer

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/tickets", tags=["attachments"])
download_router = APIRouter(prefix="/api/v1/attachments", tags=["attachments"])

FORM_OVERHEAD = 16 * 1024
"""Bytes allowed beyond the file limit for the multipart framing and the small fields."""


class AttachmentRead(BaseModel):
    id: uuid.UUID
    ticket_id: uuid.UUID
    comment_id: uuid.UUID | None
    uploader_id: uuid.UUID
    filename: str
    content_type: str
    size: int
    sha256: str
    is_internal: bool
    created_at: datetime
    download_url: str
    """Signed for the caller only; it expires at `download_expires_at`."""
    download_expires_at: datetime


def _link(
    runtime: Runtime, tenant: Tenant, viewer: Viewer, attachment_id: uuid.UUID
) -> tuple[str, datetime]:
    return attachments.link_for(runtime, tenant, viewer.user.id, attachment_id)


def _read(
    runtime: Runtime, tenant: Tenant, viewer: Viewer, attachment: Attachment
) -> AttachmentRead:
    url, expires = _link(runtime, tenant, viewer, attachment.id)
    return AttachmentRead(
        id=attachment.id,
        ticket_id=attachment.ticket_id,
        comment_id=attachment.comment_id,
        uploader_id=attachment.uploader_id,
        filename=attachment.filename,
        content_type=attachment.content_type,
        size=attachment.size,
        sha256=attachment.sha256,
        is_internal=attachment.is_internal,
        created_at=attachment.created_at,
        download_url=url,
        download_expires_at=expires,
    )


# Receiving an upload -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedUpload:
    upload: attachments.Upload
    inspected: attachments.Inspected
    comment_id: uuid.UUID | None


def _precheck_credentials(request: Request, tenant: Tenant) -> None:
    """A stateless look at the access token before any body is read.

    The full check (user active, session version) is `CurrentUser`, which runs afterwards.
    """
    token = bearer_token(request)
    if token is None:
        token = request.cookies.get(ACCESS_COOKIE)
        if token:
            check_csrf(request)
    if not token:
        raise Unauthorized("Sign in first: send a Bearer access token.", code="not_authenticated")
    try:
        claims = get_runtime(request).signer.verify(token, token_type="access")
    except InvalidTokenError as exc:
        raise Unauthorized("The access token is invalid or expired.", code="invalid_token") from exc
    if claims.organization_id != tenant.id:
        raise Unauthorized("The access token is invalid or expired.", code="invalid_token")


def _file_missing(detail: str) -> Unprocessable:
    return Unprocessable(
        detail,
        code="validation_error",
        errors=[{"loc": ["body", "file"], "msg": "a file part is required", "type": "missing"}],
    )


async def receive_upload(request: Request, tenant: CurrentTenant) -> ReceivedUpload:
    """Read the multipart body (field `file`, optional `comment_id`) within the size limit."""
    _precheck_credentials(request, tenant)
    runtime = get_runtime(request)
    limit = runtime.settings.max_upload_bytes
    budget = limit + FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > budget:
        raise attachments.payload_too_large(limit)
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise _file_missing("Send the file as multipart/form-data in the field `file`.")
    limited = Request(
        request.scope, attachments.limited_receive(request.receive, budget=budget, limit=limit)
    )
    try:
        form = await limited.form(max_files=1, max_fields=4, max_part_size=1024)
    except StarletteHTTPException as exc:
        raise BadRequest(f"Malformed multipart body: {exc.detail}", code="malformed_body") from exc
    try:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise _file_missing("The multipart body has no file in the field `file`.")
        data = await part.read(limit + 1)
        filename = part.filename
        raw_comment = form.get("comment_id")
    finally:
        await form.close()
    comment_id = None
    if isinstance(raw_comment, str) and raw_comment.strip():
        try:
            comment_id = uuid.UUID(raw_comment.strip())
        except ValueError as exc:
            raise Unprocessable(
                "comment_id must be a UUID.",
                code="validation_error",
                errors=[{"loc": ["body", "comment_id"], "msg": "not a UUID", "type": "uuid"}],
            ) from exc
    upload = attachments.Upload(filename=filename, data=data)
    inspected = await attachments.inspect_upload(upload, max_bytes=limit)
    return ReceivedUpload(upload, inspected, comment_id)


_MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "comment_id": {
                            "type": "string",
                            "format": "uuid",
                            "description": "attach to this comment (its author, shortly after "
                            "writing it); the file is internal if the comment is",
                        },
                    },
                }
            }
        },
    }
}


# Routes ------------------------------------------------------------------------------------


@router.post(
    "/{ticket_id}/attachments",
    status_code=status.HTTP_201_CREATED,
    response_model=AttachmentRead,
    summary="Attach a file to a ticket or one of its comments (multipart; type by content)",
    openapi_extra=_MULTIPART_BODY,
    responses={413: {"description": "The file is larger than SERVICEDESK_MAX_UPLOAD_BYTES"}},
)
async def upload_attachment(
    request: Request,
    ticket_id: uuid.UUID,
    received: Annotated[ReceivedUpload, Depends(receive_upload)],
    viewer: CurrentViewer,
    tenant: CurrentTenant,
    session: TenantSession,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Response:
    runtime = get_runtime(request)
    if idempotency_key is not None:
        # Multipart boundaries differ between retries: fingerprint what the request means.
        meaning = f"{received.inspected.sha256}\n{received.upload.filename}\n{received.comment_id}"
        replay = await idempotency.claim(
            session,
            organization_id=tenant.id,
            user_id=viewer.user.id,
            key=idempotency_key,
            fingerprint=idempotency.request_fingerprint("POST", request.url.path, meaning.encode()),
        )
        if replay is not None:
            body = dict(replay.body)
            if "id" in body:  # a fresh link: the stored one may have expired since
                url, expires = _link(runtime, tenant, viewer, uuid.UUID(str(body["id"])))
                body.update(download_url=url, download_expires_at=expires.isoformat())
            return JSONResponse(
                body, status_code=replay.status_code, headers={"Idempotent-Replayed": "true"}
            )
    attachment = await attachments.add_attachment(
        session,
        viewer,
        tenant,
        runtime.storage,
        ticket_id,
        received.upload,
        received.inspected,
        comment_id=received.comment_id,
    )
    body = _read(runtime, tenant, viewer, attachment).model_dump(mode="json")
    if idempotency_key is not None:
        await idempotency.remember(
            session,
            organization_id=tenant.id,
            user_id=viewer.user.id,
            key=idempotency_key,
            status_code=201,
            body=body,
        )
    return JSONResponse(body, status_code=status.HTTP_201_CREATED)


@router.get(
    "/{ticket_id}/attachments",
    response_model=list[AttachmentRead],
    summary="A ticket's files, each with a short-lived download link (internal ones for staff)",
)
async def list_attachments(
    request: Request,
    ticket_id: uuid.UUID,
    viewer: CurrentViewer,
    tenant: CurrentTenant,
    session: TenantSession,
) -> list[AttachmentRead]:
    runtime = get_runtime(request)
    rows = await attachments.list_attachments(session, viewer, ticket_id)
    return [_read(runtime, tenant, viewer, a) for a in rows]


@router.delete(
    "/{ticket_id}/attachments/{attachment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a file (soft; its uploader or an admin)",
)
async def delete_attachment(
    ticket_id: uuid.UUID,
    attachment_id: uuid.UUID,
    viewer: CurrentViewer,
    tenant: CurrentTenant,
    session: TenantSession,
) -> Response:
    await attachments.delete_attachment(session, viewer, tenant, ticket_id, attachment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact name RFC 5987-encoded."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    ascii_name = (
        "".join(c if c.isprintable() and c not in '"\\%;' else "_" for c in ascii_name).strip()
        or "file"
    )
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


@download_router.get(
    "/download",
    summary="Download a file through a signed link (the same signed-in user; always a download)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file"},
        403: {"description": "The link was issued to another user, or has expired"},
        404: {"description": "Invalid link, or the file is gone or no longer visible"},
    },
)
async def download_attachment(
    request: Request,
    token: Annotated[str, Query(min_length=16, max_length=1000)],
    viewer: CurrentViewer,
    tenant: CurrentTenant,
    session: TenantSession,
) -> StreamingResponse:
    runtime = get_runtime(request)
    attachment = await attachments.access_download(
        session,
        viewer,
        tenant,
        links_of(runtime),
        token,
        lifetime_seconds=runtime.settings.download_link_seconds,
    )
    try:
        stored = await runtime.storage.open(attachment.storage_key)
    except StorageKeyNotFound as exc:
        log.error("attachment body missing", extra={"attachment_id": str(attachment.id)})
        raise NotFound("The file's content is missing.", code="file_missing") from exc
    headers = {
        "Content-Disposition": content_disposition(attachment.filename),
        "Content-Length": str(stored.size),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
        # If anything ever renders it anyway: no scripts, no plugins, no same-origin rights.
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
    return StreamingResponse(
        stored,
        media_type=attachment.content_type,
        headers=headers,
        background=BackgroundTask(stored.aclose),
    )
