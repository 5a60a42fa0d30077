"""The ticket status workflow: which moves exist and who may make them."""

from __future__ import annotations

from datetime import datetime, timedelta

from servicedesk.models import Role, TicketStatus

S = TicketStatus

# New → Open → In Progress ⇄ On Hold → Resolved → Closed, plus Rejected; reopen Resolved → Open.
STAFF_MOVES: dict[TicketStatus, frozenset[TicketStatus]] = {
    S.NEW: frozenset({S.OPEN, S.IN_PROGRESS, S.ON_HOLD, S.RESOLVED, S.REJECTED, S.CLOSED}),
    S.OPEN: frozenset({S.IN_PROGRESS, S.ON_HOLD, S.RESOLVED, S.REJECTED, S.CLOSED}),
    S.IN_PROGRESS: frozenset({S.OPEN, S.ON_HOLD, S.RESOLVED, S.REJECTED, S.CLOSED}),
    S.ON_HOLD: frozenset({S.OPEN, S.IN_PROGRESS, S.RESOLVED, S.REJECTED, S.CLOSED}),
    S.RESOLVED: frozenset({S.OPEN, S.CLOSED}),
    S.CLOSED: frozenset(),
    S.REJECTED: frozenset(),
}
FINAL = frozenset({S.CLOSED, S.REJECTED})
ACTIVE = frozenset({S.NEW, S.OPEN, S.IN_PROGRESS, S.ON_HOLD})


def allowed_moves(
    *,
    role: str,
    is_requester: bool,
    current: TicketStatus,
    resolved_at: datetime | None,
    reopen_window: timedelta,
    now: datetime,
) -> frozenset[TicketStatus]:
    """The statuses `role` may move a ticket in `current` to, now."""
    if role in (Role.AGENT, Role.ADMIN):
        return STAFF_MOVES[current]
    if role == Role.REQUESTER and is_requester:
        moves: set[TicketStatus] = set()
        if current not in FINAL:
            moves.add(S.CLOSED)  # a requester may withdraw or close their own ticket
        if current == S.RESOLVED and resolved_at is not None and now - resolved_at <= reopen_window:
            moves.add(S.OPEN)
        return frozenset(moves)
    return frozenset()
