"""API shapes of categories, tickets, comments and saved views."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from servicedesk.models import Channel, Priority, TicketStatus
from servicedesk.tickets.fields import FieldDefinition

Subject = Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=200)]
Description = Annotated[str, StringConstraints(min_length=10, max_length=50_000)]
Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=50),
]
CommentBody = Annotated[str, StringConstraints(min_length=1, max_length=50_000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def clean_tags(tags: list[str] | None) -> list[str] | None:
    if tags is None:
        return None
    out: list[str] = []
    for tag in tags:
        if any(ord(c) < 32 or c in "<>\"'`" for c in tag):
            raise ValueError(f"tag {tag!r} has characters that are not allowed")
        if tag not in out:
            out.append(tag)
    return out


# Categories ------------------------------------------------------------------------------


class CategoryCreate(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    parent_id: uuid.UUID | None = None
    default_priority: Priority = Priority.MEDIUM
    department_id: uuid.UUID | None = None
    fields: list[FieldDefinition] = Field(default_factory=list, max_length=50)
    sort_order: int = Field(0, ge=0, le=10_000)


class CategoryUpdate(Strict):
    name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
        | None
    ) = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    default_priority: Priority | None = None
    department_id: uuid.UUID | None = None
    is_active: bool | None = None
    fields: list[FieldDefinition] | None = Field(None, max_length=50)
    sort_order: int | None = Field(None, ge=0, le=10_000)


class CategoryRead(BaseModel):
    """A category as the API shows it; frozen, since cached lists hand out copies of these."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: uuid.UUID
    name: str
    description: str | None
    parent_id: uuid.UUID | None
    default_priority: Priority
    department_id: uuid.UUID | None
    is_active: bool
    fields: list[dict[str, Any]]
    sort_order: int
    created_at: datetime
    updated_at: datetime


# Tickets ---------------------------------------------------------------------------------


class TicketCreate(Strict):
    subject: Subject
    description: Description
    category_id: uuid.UUID
    subcategory_id: uuid.UUID | None = None
    priority: Priority | None = None
    """Defaults to the category's default priority."""
    channel: Channel = Channel.API
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    custom_fields: dict[str, Any] = Field(default_factory=dict)
    requester_id: uuid.UUID | None = None
    """Agents and admins may file on behalf of a requester; requesters file for themselves."""
    assignee_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None

    _tags = field_validator("tags")(clean_tags)


class TicketUpdate(Strict):
    """A partial change; `version` is the version the change was based on (or If-Match)."""

    version: int | None = Field(None, ge=1)
    subject: Subject | None = None
    description: Description | None = None
    category_id: uuid.UUID | None = None
    subcategory_id: uuid.UUID | None = None
    priority: Priority | None = None
    department_id: uuid.UUID | None = None
    assignee_id: uuid.UUID | None = None
    tags: list[Tag] | None = Field(None, max_length=20)
    custom_fields: dict[str, Any] | None = None

    _tags = field_validator("tags")(clean_tags)


class StatusChange(Strict):
    status: TicketStatus
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] | None = None
    version: int | None = Field(None, ge=1)


class UserRef(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    full_name: str
    email: str


class TicketRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    number: str
    subject: str
    description: str
    description_html: str
    category_id: uuid.UUID
    subcategory_id: uuid.UUID | None
    priority: Priority
    status: TicketStatus
    department_id: uuid.UUID | None
    requester_id: uuid.UUID
    assignee_id: uuid.UUID | None
    channel: Channel
    tags: list[str]
    custom_fields: dict[str, Any]
    rejection_reason: str | None
    reopened_count: int
    version: int
    submitted_at: datetime
    updated_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    response_seconds: int | None = None
    """Seconds from submission to the first public agent reply."""
    resolution_seconds: int | None = None
    """Seconds from submission to resolution."""
    allowed_transitions: list[TicketStatus] = Field(default_factory=list)
    """Statuses the caller may move this ticket to now."""


class TicketSummary(BaseModel):
    """A row of a queue or search result."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    number: str
    subject: str
    priority: Priority
    status: TicketStatus
    category_id: uuid.UUID
    department_id: uuid.UUID | None
    requester_id: uuid.UUID
    assignee_id: uuid.UUID | None
    channel: Channel
    tags: list[str]
    submitted_at: datetime
    updated_at: datetime
    version: int
    headline: str | None = None
    """Search only: the matching passage, with matches wrapped in <mark> (HTML-escaped)."""
    rank: float | None = None


class TicketPage(BaseModel):
    items: list[TicketSummary]
    next_cursor: str | None = None


# Comments --------------------------------------------------------------------------------


class CommentCreate(Strict):
    body: CommentBody
    is_internal: bool = False


class CommentUpdate(Strict):
    body: CommentBody


class CommentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    ticket_id: uuid.UUID
    author_id: uuid.UUID
    body: str
    body_html: str
    is_internal: bool
    mentions: list[uuid.UUID]
    created_at: datetime
    edited_at: datetime | None


class HistoryEntry(BaseModel):
    id: uuid.UUID
    actor_id: uuid.UUID | None
    actor_type: str
    action: str
    old_values: dict[str, Any] | None
    new_values: dict[str, Any] | None
    created_at: datetime
