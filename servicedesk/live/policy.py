"""Who receives which event: routing to rooms, then the per-connection visibility check.

The ticket rule is `tickets.auth.Viewer.can_see`, the one place ticket visibility is decided;
this module only gathers the ticket's audience fields (requester, assignee, department) from the
event payload, or from the database when the payload lacks them, to ask it. On top of it:
internal notes and files go to staff only, user events to the user and admins, and anything of
another organization to nobody. An event type this module does not know is delivered to no one
until a rule is added here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from servicedesk.live.protocol import Room, event_message
from servicedesk.models import Role, Ticket
from servicedesk.tickets.auth import Viewer

TICKET_PREFIXES = ("ticket.", "comment.", "attachment.")
USER_PREFIX = "user."

AUDIENCE_FIELDS = ("requester_id", "assignee_id", "department_id")

SESSION_ENDING = frozenset(
    {"user.rejected", "user.suspended", "user.deactivated", "user.role_changed"}
)
"""User events after which that user's live connections are closed (4401): they re-authenticate
and get the rooms and filtering of their new role, or are refused."""


def _uuid(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


@dataclass(frozen=True)
class TicketFacts:
    """The fields ticket visibility depends on."""

    requester_id: uuid.UUID | None
    assignee_id: uuid.UUID | None
    department_id: uuid.UUID | None

    def as_ticket(self) -> Ticket:
        """A transient ticket carrying only these fields, for `Viewer.can_see`."""
        return Ticket(
            requester_id=self.requester_id,
            assignee_id=self.assignee_id,
            department_id=self.department_id,
        )


@dataclass
class LiveEvent:
    """A committed domain event on its way to live connections."""

    seq: int
    envelope: dict[str, Any]
    organization_id: uuid.UUID
    event_type: str
    payload: dict[str, Any]
    message: str
    ticket_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    is_internal: bool = False
    known: dict[str, uuid.UUID | None] = field(default_factory=dict)
    """Audience fields the payload states."""
    ticket: Ticket | None = None
    """The audience fields as a transient ticket, once complete."""

    @property
    def event_id(self) -> str:
        return str(self.envelope["event_id"])

    @property
    def is_ticket_event(self) -> bool:
        return self.event_type.startswith(TICKET_PREFIXES)

    @property
    def is_user_event(self) -> bool:
        return self.event_type.startswith(USER_PREFIX)

    @classmethod
    def of(cls, seq: int, envelope: dict[str, Any]) -> LiveEvent:
        payload = envelope.get("payload") or {}
        event_type = str(envelope["event_type"])
        event = cls(
            seq=seq,
            envelope=envelope,
            organization_id=uuid.UUID(str(envelope["organization_id"])),
            event_type=event_type,
            payload=payload,
            message=event_message(seq, envelope),
            ticket_id=_uuid(payload.get("ticket_id")),
            user_id=_uuid(payload.get("user_id")),
            is_internal=bool(payload.get("is_internal", False)),
        )
        if event.is_ticket_event:
            event.known = payload_facts(event_type, payload)
            if len(event.known) == len(AUDIENCE_FIELDS):
                event.complete(TicketFacts(**event.known))
        return event

    @property
    def needs_facts(self) -> bool:
        return self.is_ticket_event and self.ticket is None and self.ticket_id is not None

    def complete(self, stored: TicketFacts | None) -> None:
        """Fill the fields the payload lacks from the stored ticket (the payload wins)."""
        base = stored or TicketFacts(None, None, None)
        self.ticket = TicketFacts(
            **{f: self.known[f] if f in self.known else getattr(base, f) for f in AUDIENCE_FIELDS}
        ).as_ticket()

    def cache_tags(self) -> list[str]:
        """Cache tags this event makes stale: `ticket:{id}`, `user:{id}`, `categories:{org}`."""
        tags = []
        if self.ticket_id is not None:
            tags.append(f"ticket:{self.ticket_id}")
        if self.user_id is not None and self.is_user_event:
            tags.append(f"user:{self.user_id}")
        if self.event_type.startswith("organization."):
            tags.append(f"org:{self.organization_id}")
        if self.event_type.startswith("category."):
            tags.append(f"categories:{self.organization_id}")
        return tags

    def changes_audience(self) -> bool:
        """True when the ticket's requester, assignee or department changed."""
        if self.event_type == "ticket.assigned":
            return True
        if self.event_type == "ticket.updated":
            changed = set(self.payload.get("changed_fields") or ())
            return bool(changed & {"department_id", "requester_id", "assignee_id"})
        return False

    def rooms(self) -> list[Room]:
        """The rooms the event is routed to; each member is then checked with `may_receive`."""
        org = Room("org", self.organization_id)
        if self.is_ticket_event and self.ticket_id is not None:
            rooms = [org, Room("ticket", self.ticket_id)]
            people = {
                self.ticket.requester_id if self.ticket is not None else None,
                self.ticket.assignee_id if self.ticket is not None else None,
                _uuid(self.payload.get("previous_assignee_id")),
            }
            rooms += [Room("user", p) for p in people if p is not None]
            return rooms
        if self.is_user_event and self.user_id is not None:
            return [org, Room("user", self.user_id)]
        return []


def payload_facts(event_type: str, payload: dict[str, Any]) -> dict[str, uuid.UUID | None]:
    known = {f: _uuid(payload[f]) for f in AUDIENCE_FIELDS if f in payload}
    if event_type == "ticket.updated":
        changes = payload.get("changes") or {}
        for f in AUDIENCE_FIELDS:
            change = changes.get(f)
            if isinstance(change, dict) and "new" in change:
                known[f] = _uuid(change["new"])
    return known


def may_receive(viewer: Viewer, organization_id: uuid.UUID, event: LiveEvent) -> bool:
    """Whether a connection of `viewer` in `organization_id` may receive `event`."""
    if organization_id != event.organization_id:
        return False
    user = viewer.user
    if event.is_ticket_event:
        if event.is_internal and not viewer.sees_internal:
            return False
        if event.ticket is None:
            return False
        if viewer.can_see(event.ticket):
            return True
        # The agent a ticket was taken from learns that it left their queue.
        return (
            event.event_type == "ticket.assigned"
            and viewer.is_staff
            and _uuid(event.payload.get("previous_assignee_id")) == user.id
        )
    if event.is_user_event:
        return event.user_id == user.id or user.role == Role.ADMIN
    return False


def may_join(viewer: Viewer, organization_id: uuid.UUID, room: Room) -> bool | None:
    """Whether `viewer` may join `room` without a lookup; None: ask the ticket service."""
    if room.kind == "org":
        return room.id == organization_id and viewer.is_staff
    if room.kind == "user":
        return room.id == viewer.user.id
    return None


def default_rooms(viewer: Viewer, organization_id: uuid.UUID) -> list[Room]:
    """Rooms a connection is in from the start: its own, and the organization's for staff."""
    rooms = [Room("user", viewer.user.id)]
    if viewer.is_staff:
        rooms.append(Room("org", organization_id))
    return rooms
