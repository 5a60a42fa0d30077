"""Changing many tickets at once, and importing tickets from CSV (migrations).

Both are all-or-nothing: every ticket (or row) is checked first; if one fails, the caller gets a
422 that lists every failure and nothing is written. Services never commit: the request's
transaction does, or rolls everything back.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import service as accounts
from servicedesk.audit import service as audit
from servicedesk.core.clock import utc_now
from servicedesk.core.errors import Forbidden, NotFound, PayloadTooLarge, Unprocessable
from servicedesk.core.text import plain, render_markdown, strip_control
from servicedesk.models import Channel, Priority, Role, Ticket, TicketStatus, User
from servicedesk.tenancy.service import Tenant
from servicedesk.tickets import categories, numbering, service, workflow
from servicedesk.tickets.auth import Viewer
from servicedesk.tickets.fields import FieldDefinition, FieldType, validate_values
from servicedesk.tickets.repository import TicketRepository
from servicedesk.tickets.schemas import CategoryRead, Strict, Tag, TicketSummary, clean_tags

MAX_BULK_TICKETS = 500
MAX_TAGS = 20  # as TicketCreate / TicketUpdate

IMPORT_MAX_ROWS = 10_000
IMPORT_MAX_BYTES = 20 * 1024 * 1024


# Schemas ---------------------------------------------------------------------------------


class BulkAction(Strict):
    """What to change on every ticket; omitted fields stay as they are."""

    assignee_id: uuid.UUID | None = None
    """An agent or admin; `null` unassigns (omit the key to leave assignees alone)."""
    status: TicketStatus | None = None
    """Tickets already in this status are left as they are (so a retry changes nothing)."""
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None
    """Required with `status: rejected`; recorded in the audit entry of any status change."""
    priority: Priority | None = None
    add_tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    remove_tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)

    _tags = field_validator("add_tags", "remove_tags")(clean_tags)

    @model_validator(mode="after")
    def _something_to_do(self) -> BulkAction:
        if not (
            "assignee_id" in self.model_fields_set
            or self.status is not None
            or self.priority is not None
            or self.add_tags
            or self.remove_tags
        ):
            raise ValueError(
                "give at least one of assignee_id, status, priority, add_tags, remove_tags"
            )
        if self.reason and self.status is None:
            raise ValueError("reason goes with status")
        both = sorted(set(self.add_tags) & set(self.remove_tags))
        if both:
            raise ValueError(f"tags both added and removed: {', '.join(both)}")
        return self


class BulkUpdate(Strict):
    ticket_ids: list[uuid.UUID] = Field(min_length=1, max_length=MAX_BULK_TICKETS)
    action: BulkAction

    @field_validator("ticket_ids")
    @classmethod
    def _unique(cls, ids: list[uuid.UUID]) -> list[uuid.UUID]:
        if len(set(ids)) != len(ids):
            repeated = next(i for n, i in enumerate(ids) if i in ids[:n])
            raise ValueError(f"ticket ids must be unique; repeated: {repeated}")
        return ids


class BulkResult(BaseModel):
    count: int
    """Tickets in the request."""
    changed: int
    """Tickets that actually changed (the others already had the requested values)."""
    items: list[TicketSummary]
    """Every ticket of the request as it is now, in the order the ids were sent."""


class NumberRange(BaseModel):
    year: int
    count: int
    first_number: str | None = None
    """Null in a dry run: numbers are only taken by a real import."""
    last_number: str | None = None


class ImportResult(BaseModel):
    dry_run: bool
    count: int
    first_number: str | None = None
    last_number: str | None = None
    ranges: list[NumberRange]
    """One block of consecutive numbers per year of `submitted_at`."""


# Bulk update -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkOutcome:
    tickets: list[Ticket]
    """In the order the ids were sent."""
    changed: int


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _new_tags(ticket: Ticket, action: BulkAction) -> list[str]:
    removed = set(action.remove_tags)
    tags = [t for t in ticket.tags if t not in removed]
    for tag in (plain(t) for t in action.add_tags):
        if tag not in tags:
            tags.append(tag)
    return tags


def _check_one(
    ticket: Ticket, action: BulkAction, viewer: Viewer, tenant: Tenant, now: datetime
) -> list[str]:
    problems: list[str] = []
    current = TicketStatus(ticket.status)
    if action.status is not None and action.status != current:
        allowed = workflow.allowed_moves(
            role=viewer.user.role,
            is_requester=ticket.requester_id == viewer.user.id,
            current=current,
            resolved_at=ticket.resolved_at,
            reopen_window=service.reopen_window(tenant),
            now=now,
        )
        if action.status not in allowed:
            names = ", ".join(sorted(allowed)) or "none"
            problems.append(f"a {current} ticket cannot move to {action.status}; allowed: {names}")
    if action.add_tags:
        count = len(_new_tags(ticket, action))
        if count > MAX_TAGS:
            problems.append(f"would have {count} tags; at most {MAX_TAGS}")
    return problems


async def bulk_update(
    session: AsyncSession, viewer: Viewer, tenant: Tenant, data: BulkUpdate
) -> BulkOutcome:
    """Apply one action to up to 500 tickets: every ticket is checked before any is changed."""
    if not viewer.can_work:
        raise Forbidden("Only agents and admins can change tickets in bulk.", code="read_only")
    action = data.action
    if action.status == TicketStatus.REJECTED and not action.reason:
        raise Unprocessable(
            "Rejecting tickets needs a reason.",
            code="reason_required",
            errors=[
                {
                    "loc": ["body", "action", "reason"],
                    "msg": "required to reject",
                    "type": "missing",
                }
            ],
        )
    set_assignee = "assignee_id" in action.model_fields_set
    if set_assignee and action.assignee_id is not None:
        try:
            await accounts.check_assignable(session, action.assignee_id, field="assignee_id")
        except Unprocessable as exc:
            exc.errors = [{**e, "loc": ["body", "action", "assignee_id"]} for e in exc.errors or []]
            raise

    # Locked in id order (the repository's), so two bulk requests cannot deadlock each other.
    found = {
        t.id: t
        for t in await TicketRepository(session).get_many_for_update(viewer, data.ticket_ids)
    }
    missing = [i for i in data.ticket_ids if i not in found]
    if missing:
        # Missing and not-yours look the same; only ids the caller sent are named.
        raise NotFound(
            f"{_plural(len(missing), 'ticket')} not found; nothing was changed.",
            code="tickets_not_found",
            extra={"not_found": [str(i) for i in missing]},
        )
    tickets = [found[i] for i in data.ticket_ids]

    now = utc_now()
    failures = [
        {"ticket_id": str(t.id), "number": t.number, "error": "; ".join(problems)}
        for t in tickets
        if (problems := _check_one(t, action, viewer, tenant, now))
    ]
    if failures:
        raise Unprocessable(
            f"{_plural(len(failures), 'ticket')} of {len(tickets)} cannot be changed this way; "
            "nothing was changed.",
            code="bulk_update_invalid",
            extra={"tickets": failures},
        )

    actor = service.actor_of(viewer)
    changed = 0
    for ticket in tickets:
        before = service.snapshot(ticket)
        if set_assignee:
            ticket.assignee_id = action.assignee_id
        if action.priority is not None:
            ticket.priority = action.priority
        status_changed = action.status is not None and action.status != ticket.status
        if action.status is not None and status_changed:
            service.apply_status(ticket, action.status, reason=action.reason)
        if action.add_tags or action.remove_tags:
            ticket.tags = _new_tags(ticket, action)
        old, new = audit.diff(before, service.snapshot(ticket))
        if not new:
            continue
        service.touch(ticket)
        changed += 1
        await audit.record(
            session,
            organization_id=tenant.id,
            actor=actor,
            action="ticket.bulk_updated",
            table="tickets",
            record_id=ticket.id,
            old=old,
            new={**new, **({"reason": action.reason} if status_changed and action.reason else {})},
        )
        service.emit_changes(
            session, ticket, actor, old, new, reason=action.reason if status_changed else None
        )
    await session.flush()
    return BulkOutcome(tickets, changed)


# CSV import ------------------------------------------------------------------------------

FIELD_PREFIX = "field:"
COLUMNS = (
    "subject",
    "description",
    "category",
    "subcategory",
    "priority",
    "status",
    "requester_email",
    "assignee_email",
    "department",
    "tags",
    "submitted_at",
    "resolved_at",
    "closed_at",
    "channel",
    "rejection_reason",
)
REQUIRED_COLUMNS = ("subject", "description", "category", "requester_email")
_TAG_SPLIT = re.compile(r"[;|]")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_TRUE = frozenset({"true", "yes", "y", "1"})
_FALSE = frozenset({"false", "no", "n", "0"})
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_CLOSING = frozenset({TicketStatus.RESOLVED, TicketStatus.CLOSED, TicketStatus.REJECTED})
_PRIORITIES = frozenset(p.value for p in Priority)
_STATUSES = frozenset(s.value for s in TicketStatus)
_CHANNELS = frozenset(c.value for c in Channel)

Report = Callable[[str, str], None]
"""Adds an error of a row: (column, message)."""


class _CellError(ValueError):
    pass


def authorize_import(viewer: Viewer) -> None:
    """Imports are for admins (the API checks this before it reads the upload)."""
    if viewer.user.role != Role.ADMIN:
        raise Forbidden("Importing tickets needs the admin role.", code="insufficient_role")


def _shown(value: str, limit: int = 80) -> str:
    """A cell quoted in an error message, cut short."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _invalid_file(detail: str) -> Unprocessable:
    return Unprocessable(detail, code="invalid_csv")


@dataclass
class _Table:
    header: list[str]
    rows: list[tuple[int, int, list[str]]]
    """(data row number, line where the record starts, cells)."""


def _parse_header(raw: list[str]) -> list[str]:
    header: list[str] = []
    for cell in raw:
        name = cell.strip()
        if name.lower().startswith(FIELD_PREFIX):
            name = FIELD_PREFIX + name[len(FIELD_PREFIX) :].strip().lower()
        else:
            name = name.lower()
        header.append(name)
    if len(raw) == 1 and ";" in raw[0]:
        raise _invalid_file("The header has one column only: separate columns with commas (,).")
    empty = [i + 1 for i, name in enumerate(header) if name in ("", FIELD_PREFIX)]
    if empty:
        raise _invalid_file(f"Header column {empty[0]} has no name.")
    repeated = sorted({n for n in header if header.count(n) > 1})
    if repeated:
        raise _invalid_file(f"Columns appear more than once: {', '.join(repeated)}.")
    unknown = [n for n in header if n not in COLUMNS and not n.startswith(FIELD_PREFIX)]
    if unknown:
        raise _invalid_file(
            f"Unknown columns: {', '.join(_shown(n, 40) for n in unknown[:10])}. Known: "
            f"{', '.join(COLUMNS)}, and field:<key> for a category's own fields."
        )
    absent = [n for n in REQUIRED_COLUMNS if n not in header]
    if absent:
        raise _invalid_file(f"Required columns are missing: {', '.join(absent)}.")
    return header


def _read_table(file_bytes: bytes) -> _Table:
    if len(file_bytes) > IMPORT_MAX_BYTES:
        raise PayloadTooLarge(
            f"An import file may have at most {IMPORT_MAX_BYTES // (1024 * 1024)} MB; split it.",
            code="import_too_large",
        )
    try:
        text = file_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _invalid_file(
            f"The file is not UTF-8 text (undecodable byte at offset {exc.start}); save it as "
            "'CSV UTF-8' and upload it again."
        ) from exc
    if "\x00" in text:
        raise _invalid_file("The file is binary (it contains NUL bytes), not a CSV.")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        raw_header = next(reader, None)
        if raw_header is None or not any(c.strip() for c in raw_header):
            raise _invalid_file("The file is empty: the first line must be the header row.")
        header = _parse_header(raw_header)
        rows: list[tuple[int, int, list[str]]] = []
        number = 0
        line = reader.line_num + 1
        for cells in reader:
            number += 1
            if number > IMPORT_MAX_ROWS:
                raise PayloadTooLarge(
                    f"An import may have at most {IMPORT_MAX_ROWS:,} rows; split the file.",
                    code="import_too_many_rows",
                )
            if any(c.strip() for c in cells):
                rows.append((number, line, cells))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise _invalid_file(f"The CSV is malformed near line {reader.line_num}: {exc}.") from exc
    if not rows:
        raise _invalid_file("The file has a header but no data rows.")
    return _Table(header, rows)


def _field_value(definition: FieldDefinition, raw: str) -> Any:
    """A CSV cell as the JSON value the API would take for this field type."""
    value = raw.strip()
    kind = definition.type
    if kind in (FieldType.TEXT, FieldType.LONG_TEXT):
        return raw
    if kind == FieldType.NUMBER:
        if not _NUMBER.match(value):
            raise _CellError("must be a number")
        try:
            return int(value)
        except ValueError:
            return float(value)
    if kind == FieldType.BOOLEAN:
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise _CellError("must be true or false (yes/no)")
    if kind == FieldType.MULTI_SELECT:
        return [v.strip() for v in value.split(";") if v.strip()]
    if kind == FieldType.COST_ITEMS:
        try:
            return json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise _CellError(
                'must be JSON like [{"description": "RAM", "quantity": 2, "unit_cost": "40.00"}]'
            ) from exc
    return value  # money, date, select: validated from their text


def _when(raw: str) -> datetime | None:
    value = raw.strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _CellError("must be an ISO 8601 date or time, like 2024-03-01T09:30:00Z") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # no offset given: UTC
    return moment.astimezone(UTC)


@dataclass
class _Row:
    number: int
    values: dict[str, Any]
    description_source: str
    year: int


@dataclass(frozen=True)
class _Form:
    definitions: list[dict[str, Any]]
    parsed: dict[str, FieldDefinition]


@dataclass
class _Lookups:
    categories: dict[str, CategoryRead]
    requesters: dict[str, User]
    """Active users by lower-cased email."""
    assignees: dict[str, User]
    """Active agents and admins by lower-cased email."""
    departments: dict[str, uuid.UUID]
    forms: dict[tuple[uuid.UUID, uuid.UUID | None], _Form] = field(default_factory=dict)
    """The field definitions of each (category, sub-category) met so far."""


async def _lookups(session: AsyncSession, table: _Table) -> _Lookups:
    """Everything the rows refer to, one query per kind, before any row is checked."""
    header = table.header
    emails: set[str] = set()
    for column in ("requester_email", "assignee_email"):
        if column in header:
            at = header.index(column)
            emails.update(
                cells[at].strip().lower()
                for _, _, cells in table.rows
                if at < len(cells) and cells[at].strip()
            )
    users = await accounts.find_users_by_emails(session, sorted(emails))
    requesters: dict[str, User] = {}
    assignees: dict[str, User] = {}
    for user in users:
        # The API's own rules; the users are in the session already, so these run no query.
        try:
            await accounts.check_requester(session, user.id, field="requester_email")
        except Unprocessable:
            continue
        requesters[user.email.lower()] = user
        try:
            await accounts.check_assignable(session, user.id, field="assignee_email")
        except Unprocessable:
            continue
        assignees[user.email.lower()] = user
    departments: dict[str, uuid.UUID] = {}
    if "department" in header:
        for department in await accounts.list_departments(session, include_inactive=False):
            departments[department.name.lower()] = department.id
    every = await categories.list_categories(session, include_inactive=True)
    return _Lookups({c.name.lower(): c for c in every}, requesters, assignees, departments)


class _RowChecker:
    def __init__(self, tenant: Tenant, lookups: _Lookups, header: list[str], now: datetime):
        self.tenant = tenant
        self.lookups = lookups
        self.header = header
        self.now = now
        self.field_keys = [
            name[len(FIELD_PREFIX) :] for name in header if name.startswith(FIELD_PREFIX)
        ]

    def check(self, number: int, cells: list[str]) -> tuple[_Row | None, list[dict[str, str]]]:
        errors: list[dict[str, str]] = []

        def bad(column: str, message: str) -> None:
            errors.append({"column": column, "message": message})

        if len(cells) != len(self.header):
            bad("", f"has {len(cells)} cells but the header has {len(self.header)} columns")
            return None, errors
        cell = dict(zip(self.header, cells, strict=True))

        def get(column: str) -> str:
            return cell.get(column, "")

        raw_subject = get("subject")
        subject = plain(raw_subject)
        if len(subject) < 5:
            bad("subject", "must have at least 5 characters")
        elif len(raw_subject.strip()) > 200:
            bad("subject", "must have at most 200 characters")
        description = strip_control(get("description"))
        if len(description.strip()) < 10:  # as service.create_ticket: visible characters
            bad("description", "must have at least 10 visible characters")
        elif len(description) > 50_000:
            bad("description", "must have at most 50,000 characters")

        category, sub = self._category(get("category"), get("subcategory"), bad)
        custom: dict[str, Any] = {}
        if category is not None:
            custom = self._custom_fields(category, sub, cell, bad)

        priority = get("priority").strip().lower()
        if not priority:
            default = sub.default_priority if sub else category.default_priority if category else ""
            priority = str(default)
        elif priority not in _PRIORITIES:
            bad("priority", f"must be one of {', '.join(Priority)}")
        status_text = get("status").strip().lower() or TicketStatus.NEW.value
        status = None
        if status_text in _STATUSES:
            status = TicketStatus(status_text)
        else:
            bad("status", f"must be one of {', '.join(TicketStatus)}")

        requester = None
        email = get("requester_email").strip().lower()
        if not email:
            bad("requester_email", "is required")
        elif (requester := self.lookups.requesters.get(email)) is None:
            bad("requester_email", f"no active user {_shown(email)} in this organization")
        assignee = None
        email = get("assignee_email").strip().lower()
        if email and (assignee := self.lookups.assignees.get(email)) is None:
            bad("assignee_email", f"no active agent or admin {_shown(email)} in this organization")

        department_id = None
        department = plain(get("department"))
        if department:
            department_id = self.lookups.departments.get(department.lower())
            if department_id is None:
                bad("department", f"no active department named {_shown(department)}")
        elif category is not None:
            department_id = (sub.department_id if sub else None) or category.department_id

        tags = self._tags(get("tags"), bad)
        channel = get("channel").strip().lower() or Channel.API.value
        if channel not in _CHANNELS:
            bad("channel", f"must be one of {', '.join(Channel)}")
        reason = strip_control(get("rejection_reason")).strip() or None
        if reason and len(reason) > 2000:
            bad("rejection_reason", "must have at most 2000 characters")

        times = self._times(cell, status, reason, bad)
        if errors or category is None or status is None or requester is None or times is None:
            return None, errors
        submitted, resolved, closed = times
        values = {
            "id": uuid.uuid4(),
            "organization_id": self.tenant.id,
            "subject": subject,
            "description": description,
            "category_id": category.id,
            "subcategory_id": sub.id if sub else None,
            "priority": priority,
            "status": str(status),
            "department_id": department_id,
            "requester_id": requester.id,
            "assignee_id": assignee.id if assignee else None,
            "channel": channel,
            "tags": tags,
            "custom_fields": custom,
            "rejection_reason": reason,
            "reopened_count": 0,
            "version": 1,
            "submitted_at": submitted,
            "updated_at": max(t for t in (submitted, resolved, closed) if t is not None),
            "first_response_at": None,
            "resolved_at": resolved,
            "closed_at": closed,
        }
        return _Row(number, values, description, submitted.year), errors

    def _category(
        self, name: str, sub_name: str, bad: Report
    ) -> tuple[CategoryRead | None, CategoryRead | None]:
        name, sub_name = plain(name), plain(sub_name)
        if not name:
            bad("category", "is required")
            return None, None
        category = self.lookups.categories.get(name.lower())
        if category is None or not category.is_active:
            bad("category", f"no active category named {_shown(name)}")
            return None, None
        if category.parent_id is not None:
            bad("category", "is a sub-category: put its parent here and it under subcategory")
            return None, None
        if not sub_name:
            return category, None
        sub = self.lookups.categories.get(sub_name.lower())
        if sub is None or not sub.is_active or sub.parent_id != category.id:
            bad("subcategory", f"no active sub-category {_shown(sub_name)} of {_shown(name)}")
            return None, None
        return category, sub

    def _custom_fields(
        self, category: CategoryRead, sub: CategoryRead | None, cell: dict[str, str], bad: Report
    ) -> dict[str, Any]:
        key = (category.id, sub.id if sub else None)
        form = self.lookups.forms.get(key)
        if form is None:
            definitions = (sub.fields if sub else []) + category.fields
            parsed = {d["key"]: FieldDefinition.model_validate(d) for d in definitions}
            form = self.lookups.forms[key] = _Form(definitions, parsed)
        values: dict[str, Any] = {}
        reported: set[str] = set()
        for name in self.field_keys:
            raw = cell[FIELD_PREFIX + name]
            if not raw.strip():
                continue
            definition = form.parsed.get(name)
            if definition is None:
                bad(FIELD_PREFIX + name, f"is not a field of category {_shown(category.name)}")
                reported.add(name)
                continue
            try:
                values[name] = _field_value(definition, raw)
            except _CellError as exc:
                bad(FIELD_PREFIX + name, str(exc))
                reported.add(name)
        try:
            cleaned = validate_values(form.definitions, values)
        except Unprocessable as exc:
            for error in exc.errors or []:
                name = str(error["loc"][-1])
                if name not in reported:  # a cell that could not be read is not also "required"
                    bad(FIELD_PREFIX + name, str(error["msg"]))
            return {}
        return {} if reported else cleaned

    def _tags(self, raw: str, bad: Report) -> list[str]:
        tags = [t.strip().lower() for t in _TAG_SPLIT.split(raw) if t.strip()]
        if any(len(t) > 50 for t in tags):
            bad("tags", "a tag may have at most 50 characters")
            return []
        try:
            cleaned = [plain(t) for t in clean_tags(tags) or []]
        except ValueError as exc:
            bad("tags", str(exc))
            return []
        if len(cleaned) > MAX_TAGS:
            bad("tags", f"at most {MAX_TAGS} tags")
        return cleaned

    def _times(
        self, cell: dict[str, str], status: TicketStatus | None, reason: str | None, bad: Report
    ) -> tuple[datetime, datetime | None, datetime | None] | None:
        parsed: dict[str, datetime | None] = {}
        ok = True
        for column in ("submitted_at", "resolved_at", "closed_at"):
            try:
                moment = _when(cell.get(column, ""))
            except _CellError as exc:
                bad(column, str(exc))
                ok = False
                continue
            if moment is not None and not _EARLIEST <= moment <= self.now:
                bad(column, "must be between 1970 and now")
                ok = False
                continue
            parsed[column] = moment
        if not ok or status is None:
            return None
        submitted = parsed["submitted_at"] or self.now
        resolved, closed = parsed["resolved_at"], parsed["closed_at"]
        # The timestamps the workflow would have set; missing ones get the import time, as
        # moving the ticket through the API now would (service.apply_status).
        if status not in _CLOSING:
            for column, moment in (("resolved_at", resolved), ("closed_at", closed)):
                if moment is not None:
                    bad(column, f"must be empty for a {status} ticket")
                    ok = False
        elif status == TicketStatus.RESOLVED:
            if closed is not None:
                bad("closed_at", "must be empty for a resolved ticket")
                ok = False
            resolved = resolved or self.now
        elif status == TicketStatus.CLOSED:
            closed = closed or self.now
            resolved = resolved or closed
        else:  # rejected
            if resolved is not None:
                bad("resolved_at", "must be empty for a rejected ticket")
                ok = False
            closed = closed or self.now
        if status == TicketStatus.REJECTED and not reason:
            bad("rejection_reason", "is required for a rejected ticket")
            ok = False
        if status != TicketStatus.REJECTED and reason:
            bad("rejection_reason", "is only for rejected tickets")
            ok = False
        for column, moment in (("resolved_at", resolved), ("closed_at", closed)):
            if ok and moment is not None and moment < submitted:
                bad(column, "is before submitted_at")
                ok = False
        if ok and resolved and closed and closed < resolved:
            bad("closed_at", "is before resolved_at")
            ok = False
        return (submitted, resolved, closed) if ok else None


async def import_csv(
    session: AsyncSession, viewer: Viewer, tenant: Tenant, file_bytes: bytes, *, dry_run: bool
) -> ImportResult:
    """Create a ticket per CSV row, validated like the API; any bad row → 422, nothing written."""
    authorize_import(viewer)
    table = _read_table(file_bytes)
    lookups = await _lookups(session, table)
    checker = _RowChecker(tenant, lookups, table.header, utc_now())
    good: list[_Row] = []
    report: list[dict[str, Any]] = []
    for number, line, cells in table.rows:
        row, errors = checker.check(number, cells)
        if errors:
            report.append({"row": number, "line": line, "errors": errors})
        elif row is not None:
            good.append(row)
    if report:
        outcome = "nothing would be imported" if dry_run else "nothing was imported"
        raise Unprocessable(
            f"{_plural(len(report), 'row')} of {len(table.rows)} have errors; {outcome}.",
            code="import_invalid",
            extra={"rows": report},
        )

    by_year: dict[int, list[_Row]] = defaultdict(list)
    for row in good:
        by_year[row.year].append(row)
    if dry_run:
        ranges = [NumberRange(year=y, count=len(rows)) for y, rows in sorted(by_year.items())]
        return ImportResult(dry_run=True, count=len(good), ranges=ranges)

    ranges = []
    # One counter update per year, in year order (a fixed lock order); the counter rows stay
    # locked until the transaction ends, so the numbers stay gap-free.
    for year, rows in sorted(by_year.items()):
        first = await numbering.reserve_numbers(session, tenant.id, year, len(rows))
        for offset, row in enumerate(rows):
            row.values["number"] = numbering.format_number(year, first + offset)
        ranges.append(
            NumberRange(
                year=year,
                count=len(rows),
                first_number=rows[0].values["number"],
                last_number=rows[-1].values["number"],
            )
        )
    for row in good:
        row.values["description_html"] = render_markdown(row.description_source)
    # One multi-row INSERT; the search_vector trigger fills the full-text column.
    await session.execute(insert(Ticket), [row.values for row in good])
    result = ImportResult(
        dry_run=False,
        count=len(good),
        first_number=ranges[0].first_number,
        last_number=ranges[-1].last_number,
        ranges=ranges,
    )
    # A migration: this one summary entry is the audit record; no per-ticket entries (the rows
    # are not changes made in this desk, and 10,000 entries would bury the log).
    await audit.record(
        session,
        organization_id=tenant.id,
        actor=service.actor_of(viewer),
        action="ticket.imported",
        table="tickets",
        record_id=None,
        new={
            "count": result.count,
            "first_number": result.first_number,
            "last_number": result.last_number,
            "ranges": [r.model_dump() for r in ranges],
        },
    )
    return result
