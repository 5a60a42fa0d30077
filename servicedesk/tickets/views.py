"""Saved views: a user's named queue filters."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.core.errors import Conflict, NotFound
from servicedesk.models import Channel, Priority, SavedView, TicketStatus
from servicedesk.tickets.repository import SavedViewRepository

# A user id (a real UUID: 36 dashes would pass a looser pattern and fail later), `me` or `none`.
_HEX = "[0-9a-fA-F]"
ASSIGNEE_PATTERN = rf"^(me|none|{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}})$"


class ViewFilters(BaseModel):
    """The filters a view stores; the same names as the list endpoint's query parameters."""

    model_config = ConfigDict(extra="forbid")

    status: list[TicketStatus] = Field(default_factory=list)
    priority: list[Priority] = Field(default_factory=list)
    category_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    assignee: Annotated[str, StringConstraints(pattern=ASSIGNEE_PATTERN)] | None = None
    requester_id: uuid.UUID | None = None
    tag: Annotated[str, StringConstraints(max_length=50)] | None = None
    channel: Channel | None = None
    q: Annotated[str, StringConstraints(max_length=200)] | None = None
    sort: Annotated[str, StringConstraints(pattern=r"^(updated|submitted|priority)$")] = "updated"
    order: Annotated[str, StringConstraints(pattern=r"^(asc|desc)$")] = "desc"


ViewName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class SavedViewCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ViewName
    filters: ViewFilters = Field(default_factory=ViewFilters)


class SavedViewUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ViewName | None = None
    filters: ViewFilters | None = None


class SavedViewRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    filters: dict[str, Any]


async def list_views(session: AsyncSession, user_id: uuid.UUID) -> list[SavedView]:
    return await SavedViewRepository(session).list(user_id)


async def get_view(session: AsyncSession, user_id: uuid.UUID, view_id: uuid.UUID) -> SavedView:
    view = await SavedViewRepository(session).get(user_id, view_id)
    if view is None:
        raise NotFound("Saved view not found.")
    return view


async def create_view(
    session: AsyncSession, *, organization_id: uuid.UUID, user_id: uuid.UUID, data: SavedViewCreate
) -> SavedView:
    if await SavedViewRepository(session).name_taken(user_id, data.name):
        raise Conflict("You have a view with this name.", code="view_name_taken")
    view = SavedView(
        organization_id=organization_id,
        user_id=user_id,
        name=data.name,
        filters=data.filters.model_dump(mode="json", exclude_defaults=True),
    )
    session.add(view)
    await session.flush()
    return view


async def update_view(
    session: AsyncSession, user_id: uuid.UUID, view_id: uuid.UUID, data: SavedViewUpdate
) -> SavedView:
    view = await get_view(session, user_id, view_id)
    if data.name and data.name != view.name:
        if await SavedViewRepository(session).name_taken(user_id, data.name, exclude=view.id):
            raise Conflict("You have a view with this name.", code="view_name_taken")
        view.name = data.name
    if data.filters is not None:
        view.filters = data.filters.model_dump(mode="json", exclude_defaults=True)
    await session.flush()
    return view


async def delete_view(session: AsyncSession, user_id: uuid.UUID, view_id: uuid.UUID) -> None:
    view = await get_view(session, user_id, view_id)
    await session.delete(view)
