"""Who gets what: the recipient rules, as a pure function of an event and a directory.

The rules name candidates only. The service then drops the actor, users who cannot sign in,
and anyone the ticket's visibility rule (tickets.auth.Viewer) hides it from — so an internal
note can never reach a requester even if a rule here were wrong.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

EVERYONE = frozenset({"requester", "agent", "admin", "manager"})
STAFF = frozenset({"agent", "admin", "manager"})


@dataclass(frozen=True)
class NotificationType:
    key: str
    label: str
    roles: frozenset[str] = EVERYONE
    """Who the rules below can name for it (the settings page shows only those)."""


# The preference keys: one per kind of notification (a comment event gives two kinds).
TYPES: dict[str, NotificationType] = {
    t.key: t
    for t in (
        NotificationType(
            "ticket.created",
            "A new unassigned ticket in your department",
            frozenset({"agent", "admin"}),
        ),
        NotificationType("ticket.assigned", "A ticket was assigned to you", STAFF),
        NotificationType("ticket.status_changed", "Your ticket changed status"),
        NotificationType("comment.created", "A reply on your ticket, or on a ticket you handle"),
        NotificationType("comment.mentioned", "Someone mentioned you", STAFF),
        NotificationType(
            "user.registered", "A registration waits for approval", frozenset({"admin"})
        ),
    )
}

# The domain events the fan-out handler subscribes to.
EVENT_TYPES = (
    "ticket.created",
    "ticket.assigned",
    "ticket.status_changed",
    "comment.created",
    "user.registered",
)


@dataclass(frozen=True)
class Candidate:
    """Someone a rule says should hear about an event, and as what."""

    user_id: uuid.UUID
    type: str
    """A key of TYPES."""
    dedup_key: str
    """The same key for the same user within the de-dup window is one notification."""


@dataclass(frozen=True)
class Directory:
    """The lookups the rules need (the service fills these in from accounts.service)."""

    department_workers: Callable[[uuid.UUID], Awaitable[list[uuid.UUID]]]
    """Active agents and admins of a department."""
    admins: Callable[[], Awaitable[list[uuid.UUID]]]
    """Active admins of the organization."""


def _uuid(value: Any) -> uuid.UUID | None:
    if value in (None, ""):
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


async def candidates(event: dict[str, Any], directory: Directory) -> list[Candidate]:
    """The candidates of one event, at most one per user (the first rule that names them)."""
    event_type = event["event_type"]
    p: dict[str, Any] = event.get("payload") or {}
    ticket = p.get("ticket_id")
    out: list[Candidate] = []
    named: set[uuid.UUID] = set()

    def add(user: Any, type_: str, key: str) -> None:
        user_id = _uuid(user)
        if user_id is not None and user_id not in named:
            named.add(user_id)
            out.append(Candidate(user_id, type_, key))

    if event_type == "ticket.created":
        if p.get("assignee_id"):
            # Filed with an assignee: that is an assignment (no ticket.assigned follows).
            add(p["assignee_id"], "ticket.assigned", f"ticket.assigned:{ticket}")
        elif (department := _uuid(p.get("department_id"))) is not None:
            for user_id in await directory.department_workers(department):
                add(user_id, "ticket.created", f"ticket.created:{ticket}")
    elif event_type == "ticket.assigned":
        add(p.get("assignee_id"), "ticket.assigned", f"ticket.assigned:{ticket}")
    elif event_type == "ticket.status_changed":
        key = f"ticket.status_changed:{ticket}:{p.get('new_status')}"
        add(p.get("requester_id"), "ticket.status_changed", key)
    elif event_type == "comment.created":
        comment = p.get("comment_id")
        for user_id in p.get("mentions") or []:
            add(user_id, "comment.mentioned", f"comment.mentioned:{comment}")
        author = _uuid(p.get("author_id"))
        requester = _uuid(p.get("requester_id"))
        if author is not None and author == requester:
            # The requester replied: their assignee hears of it.
            add(p.get("assignee_id"), "comment.created", f"comment.created:{comment}")
        elif not p.get("is_internal"):
            # Staff replied in public: the requester hears of it. Internal notes: never.
            add(requester, "comment.created", f"comment.created:{comment}")
    elif event_type == "user.registered":
        for user_id in await directory.admins():
            add(user_id, "user.registered", f"user.registered:{p.get('user_id')}")
    return out
