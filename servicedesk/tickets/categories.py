"""Category rules: names, one level of sub-categories, default priority and department, and the
definitions of their own fields.

Every queue and ticket page lists the organization's categories, so the list is cached per
organization (`categories`, L1) as immutable `CategoryRead` values; each caller gets its own
copies. Any committed write of a category drops the organization's entry in this process before
the response goes out (`cache.tag_model`), and in the others through the broadcast and the
`category.*` events (docs/live.md#the-cache).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import service as accounts
from servicedesk.audit import service as audit
from servicedesk.core import cache, events
from servicedesk.core.actor import Actor
from servicedesk.core.db import tenant_of
from servicedesk.core.errors import Conflict, NotFound, Unprocessable
from servicedesk.models import Category
from servicedesk.tickets.fields import check_definitions
from servicedesk.tickets.repository import CategoryRepository
from servicedesk.tickets.schemas import CategoryCreate, CategoryRead, CategoryUpdate

category_cache: cache.TTLCache[tuple[CategoryRead, ...]] = cache.TTLCache(
    "categories", ttl_seconds=300.0
)
"""Every category of an organization (inactive ones included), keyed by organization id."""


def categories_tag(organization_id: uuid.UUID) -> str:
    return f"categories:{organization_id}"


cache.tag_model(Category, lambda c: (categories_tag(c.organization_id),))


def _snapshot(c: Category) -> dict[str, Any]:
    return {
        "name": c.name,
        "description": c.description,
        "parent_id": c.parent_id,
        "default_priority": c.default_priority,
        "department_id": c.department_id,
        "is_active": c.is_active,
        "fields": c.fields,
        "sort_order": c.sort_order,
    }


async def access_category(session: AsyncSession, category_id: uuid.UUID) -> Category:
    category = await CategoryRepository(session).get(category_id)
    if category is None:
        raise NotFound("Category not found.")
    return category


async def usable(session: AsyncSession, category_id: uuid.UUID, *, field: str) -> Category:
    """An active category of the bound organization, or 422 naming the field."""
    category = await CategoryRepository(session).get(category_id)
    if category is None or not category.is_active:
        raise _unusable(field)
    return category


def _unusable(field: str) -> Unprocessable:
    return Unprocessable(
        "The category does not exist or is inactive.",
        code="invalid_category",
        errors=[{"loc": ["body", field], "msg": "unknown or inactive category", "type": "x"}],
    )


async def list_categories(session: AsyncSession, *, include_inactive: bool) -> list[CategoryRead]:
    """The categories of the bound organization, ordered for display (cached per organization).

    A transaction that has changed categories itself reads them from the database, and does not
    cache what it reads: it may still roll back.
    """
    every = await _every(session)
    return [c.model_copy(deep=True) for c in every if include_inactive or c.is_active]


async def _every(session: AsyncSession) -> tuple[CategoryRead, ...]:
    """Every category of the bound organization, shared (read-only) values of the cache."""
    organization_id = tenant_of(session)

    async def load() -> tuple[CategoryRead, ...]:
        rows = await CategoryRepository(session).list(include_inactive=True)
        return tuple(CategoryRead.model_validate(c) for c in rows)

    if organization_id is None or cache.writes_pending(session):
        return await load()
    return (
        await category_cache.get_or_load(
            str(organization_id), load, tags=(categories_tag(organization_id),)
        )
        or ()
    )


async def usable_read(session: AsyncSession, category_id: uuid.UUID, *, field: str) -> CategoryRead:
    """`usable` from the cached categories (no query on a hit), for the rules that only read a
    category: filing a ticket, checking its fields. The value is shared: do not change it."""
    found = next((c for c in await _every(session) if c.id == category_id), None)
    if found is None or not found.is_active:
        raise _unusable(field)
    return found


def _emit(session: AsyncSession, category: Category, event_type: str, actor: Actor) -> None:
    events.emit(
        session,
        organization_id=category.organization_id,
        event_type=event_type,
        actor=actor,
        payload={
            "category_id": category.id,
            "name": category.name,
            "parent_id": category.parent_id,
            "is_active": category.is_active,
        },
    )


async def create_category(
    session: AsyncSession, data: CategoryCreate, *, organization_id: uuid.UUID, actor: Actor
) -> Category:
    repo = CategoryRepository(session)
    if await repo.name_taken(data.name):
        raise Conflict("A category with this name exists.", code="category_name_taken")
    check_definitions(data.fields)
    if data.parent_id is not None:
        parent = await usable(session, data.parent_id, field="parent_id")
        if parent.parent_id is not None:
            raise Unprocessable(
                "Sub-categories are one level deep.",
                code="invalid_parent",
                errors=[{"loc": ["body", "parent_id"], "msg": "is a sub-category", "type": "x"}],
            )
    if data.department_id is not None:
        await accounts.check_department(session, data.department_id)
    category = Category(
        organization_id=organization_id,
        name=data.name,
        description=data.description,
        parent_id=data.parent_id,
        default_priority=data.default_priority,
        department_id=data.department_id,
        fields=[f.model_dump(mode="json", exclude_none=True) for f in data.fields],
        sort_order=data.sort_order,
    )
    session.add(category)
    await session.flush()
    await audit.record(
        session,
        organization_id=organization_id,
        actor=actor,
        action="category.created",
        table="categories",
        record_id=category.id,
        new=_snapshot(category),
    )
    _emit(session, category, "category.created", actor)
    return category


async def update_category(
    session: AsyncSession, category_id: uuid.UUID, data: CategoryUpdate, *, actor: Actor
) -> Category:
    """Change a category; new field definitions apply to tickets written from now on only."""
    category = await access_category(session, category_id)
    changes = data.model_dump(exclude_unset=True)
    repo = CategoryRepository(session)
    if changes.get("name") and await repo.name_taken(changes["name"], exclude=category.id):
        raise Conflict("A category with this name exists.", code="category_name_taken")
    before = _snapshot(category)
    if data.fields is not None:
        check_definitions(data.fields)
        category.fields = [f.model_dump(mode="json", exclude_none=True) for f in data.fields]
    if "department_id" in changes:
        await accounts.check_department(session, changes["department_id"])
        category.department_id = changes["department_id"]
    for name in ("name", "default_priority", "is_active", "sort_order"):
        if changes.get(name) is not None:
            setattr(category, name, changes[name])
    if "description" in changes:
        category.description = changes["description"]
    await session.flush()
    old, new = audit.diff(before, _snapshot(category))
    if new:
        await audit.record(
            session,
            organization_id=category.organization_id,
            actor=actor,
            action="category.updated",
            table="categories",
            record_id=category.id,
            old=old,
            new=new,
        )
        _emit(session, category, "category.updated", actor)
    return category
