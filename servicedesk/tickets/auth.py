"""Who sees which tickets: the one place ticket visibility is decided.

Requesters see their own tickets; agents see every ticket of their organization, or, when the
organization restricts agents to their departments, those of their department and those
assigned to them; admins and managers see all. Internal notes are for staff only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends
from sqlalchemy import ColumnElement, false, or_, true

from servicedesk.accounts.auth import CurrentUser
from servicedesk.models import Role, Ticket, User
from servicedesk.tenancy.deps import CurrentTenant
from servicedesk.tenancy.service import Tenant


class Audience(Protocol):
    """What visibility depends on: a `Ticket`, or a cached `TicketRead` of one."""

    @property
    def requester_id(self) -> uuid.UUID | None: ...

    @property
    def assignee_id(self) -> uuid.UUID | None: ...

    @property
    def department_id(self) -> uuid.UUID | None: ...


STAFF = frozenset({Role.AGENT, Role.ADMIN, Role.MANAGER})
WORKERS = frozenset({Role.AGENT, Role.ADMIN})


@dataclass(frozen=True)
class Viewer:
    """The user a ticket query runs for, with the organization's visibility setting."""

    user: User
    restricted_to_departments: bool = False

    @classmethod
    def of(cls, user: User, tenant: Tenant) -> Viewer:
        restricted = bool(tenant.settings.get("agents_restricted_to_departments", False))
        return cls(user, restricted)

    @property
    def is_staff(self) -> bool:
        return self.user.role in STAFF

    @property
    def can_work(self) -> bool:
        """Agents and admins change tickets; managers only read."""
        return self.user.role in WORKERS

    @property
    def sees_internal(self) -> bool:
        return self.is_staff

    def ticket_filter(self, t: Any = Ticket) -> ColumnElement[bool]:
        """The visibility condition, over `Ticket` or any selectable with its column names."""
        user = self.user
        if user.role == Role.REQUESTER:
            return t.requester_id == user.id  # type: ignore[no-any-return]
        if user.role == Role.AGENT and self.restricted_to_departments:
            conditions = [t.assignee_id == user.id]
            if user.department_id is not None:
                conditions.append(t.department_id == user.department_id)
            return or_(*conditions)
        if user.role in STAFF:
            return true()
        return false()

    def can_see(self, ticket: Audience) -> bool:
        user = self.user
        if user.role == Role.REQUESTER:
            return ticket.requester_id == user.id
        if user.role == Role.AGENT and self.restricted_to_departments:
            return ticket.assignee_id == user.id or (
                user.department_id is not None and ticket.department_id == user.department_id
            )
        return user.role in STAFF


async def get_viewer(user: CurrentUser, tenant: CurrentTenant) -> Viewer:
    return Viewer.of(user, tenant)


CurrentViewer = Annotated[Viewer, Depends(get_viewer)]
