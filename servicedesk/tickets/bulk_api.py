"""HTTP routes of bulk ticket changes and the CSV import.

Registered before `tickets.api.router` so that its `/{ticket_id}` routes never see these paths
(none of them takes POST on `/{ticket_id}` anyway).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from servicedesk.core import idempotency
from servicedesk.core.errors import PayloadTooLarge, Unprocessable
from servicedesk.tenancy.deps import CurrentTenant, TenantSession
from servicedesk.tickets import bulk
from servicedesk.tickets.auth import CurrentViewer
from servicedesk.tickets.bulk import BulkResult, BulkUpdate, ImportResult
from servicedesk.tickets.schemas import TicketSummary

router = APIRouter(prefix="/api/v1/tickets", tags=["tickets"])

# Multipart framing around the file: boundaries, part headers. Generous; the file itself is
# measured exactly once read.
_MULTIPART_SLACK = 64 * 1024
_CHUNK = 1024 * 1024

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


@router.post(
    "/bulk",
    response_model=BulkResult,
    summary="Change up to 500 tickets at once: assignee, status, priority, tags (all or nothing)",
    description=(
        "Agents and admins. Every ticket is locked and checked before any is changed: an unknown "
        "or invisible id answers 404 with `not_found` (the ids you sent that were not found); a "
        "ticket the action cannot apply to answers 422 with `tickets: [{ticket_id, number, "
        "error}]`. Tickets that already have the requested values are left alone, so a retry "
        "changes nothing. Each changed ticket gets a `ticket.bulk_updated` audit entry."
    ),
    responses={403: _PROBLEM, 404: _PROBLEM, 422: _PROBLEM},
)
async def bulk_update(
    data: BulkUpdate, viewer: CurrentViewer, tenant: CurrentTenant, session: TenantSession
) -> BulkResult:
    outcome = await bulk.bulk_update(session, viewer, tenant, data)
    return BulkResult(
        count=len(outcome.tickets),
        changed=outcome.changed,
        items=[TicketSummary.model_validate(t) for t in outcome.tickets],
    )


_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The CSV (UTF-8, comma-separated, header row).",
                        }
                    },
                }
            }
        },
    }
}


async def _read_upload(request: Request) -> bytes:
    """The `file` part of a multipart body, refused beyond the import limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > bulk.IMPORT_MAX_BYTES + _MULTIPART_SLACK:
        raise PayloadTooLarge(
            f"An import file may have at most {bulk.IMPORT_MAX_BYTES // (1024 * 1024)} MB.",
            code="import_too_large",
        )
    async with request.form(max_files=1, max_fields=5) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise Unprocessable(
                "Send the CSV as the `file` field of a multipart/form-data body.",
                code="file_required",
                errors=[{"loc": ["body", "file"], "msg": "required", "type": "missing"}],
            )
        chunks: list[bytes] = []
        size = 0
        while chunk := await upload.read(_CHUNK):
            size += len(chunk)
            if size > bulk.IMPORT_MAX_BYTES:
                raise PayloadTooLarge(
                    f"An import file may have at most {bulk.IMPORT_MAX_BYTES // (1024 * 1024)} MB.",
                    code="import_too_large",
                )
            chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/import",
    status_code=status.HTTP_201_CREATED,
    response_model=ImportResult,
    summary="Import tickets from a CSV file (admins; all or nothing; `dry_run` only validates)",
    description=(
        "Multipart field `file`: UTF-8 CSV (BOM allowed) with a header row. Columns: subject, "
        "description, category, requester_email (required); subcategory, priority, status, "
        "assignee_email, department, tags (`;` or `|` separated), submitted_at, resolved_at, "
        "closed_at (ISO 8601, UTC when no offset), channel (default api), rejection_reason "
        "(required for rejected), and `field:<key>` for the category's own fields. At most "
        "10,000 rows and 20 MB (413 beyond). Any bad row answers 422 with `rows: [{row, line, "
        "errors: [{column, message}]}]` (row = 1-based data row) and nothing is written. A real "
        "import answers 201; a dry run 200. Send `Idempotency-Key` to make a retry safe."
    ),
    responses={200: {"description": "Dry run: the file is valid"}, 403: _PROBLEM, 413: _PROBLEM},
    openapi_extra=_UPLOAD_BODY,
)
async def import_tickets(
    request: Request,
    response: Response,
    viewer: CurrentViewer,
    tenant: CurrentTenant,
    session: TenantSession,
    dry_run: Annotated[bool, Query(description="validate only, write nothing")] = False,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Response | ImportResult:
    bulk.authorize_import(viewer)  # before reading up to 20 MB for someone who may not
    # Receiving the file can take a while: end the transaction the sign-in check may have
    # opened (on a user-cache miss), so no connection is held meanwhile. The session's next
    # statement begins a new transaction, bound to the tenant like the first (core/db.py).
    await session.commit()
    file_bytes = await _read_upload(request)
    if idempotency_key is not None and not dry_run:
        # Over the file, not the multipart body: its boundary differs on every retry.
        replay = await idempotency.claim(
            session,
            organization_id=tenant.id,
            user_id=viewer.user.id,
            key=idempotency_key,
            fingerprint=idempotency.request_fingerprint("POST", request.url.path, file_bytes),
        )
        if replay is not None:
            return JSONResponse(
                replay.body,
                status_code=replay.status_code,
                headers={"Idempotent-Replayed": "true"},
            )
    result = await bulk.import_csv(session, viewer, tenant, file_bytes, dry_run=dry_run)
    if dry_run:
        response.status_code = status.HTTP_200_OK
    elif idempotency_key is not None:
        await idempotency.remember(
            session,
            organization_id=tenant.id,
            user_id=viewer.user.id,
            key=idempotency_key,
            status_code=status.HTTP_201_CREATED,
            body=result.model_dump(mode="json"),
        )
    return result
