"""Every query on tickets, categories, comments and saved views; visibility applied here."""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    MetaData,
    Select,
    Table,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.core.pagination import like_prefix
from servicedesk.models import (
    Attachment,
    Category,
    Comment,
    CommentRevision,
    SavedView,
    Ticket,
)
from servicedesk.tickets.auth import Viewer

# Markers around matches in search headlines; replaced by <mark> after HTML-escaping.
HL_START, HL_STOP = "\x02", "\x03"


def _html_escaped(text: Any) -> Any:
    """`&`, `<` and `>` as entities, in SQL: ts_headline's parser drops anything tag-like
    (`<b>`), so the headline is cut from escaped text and keeps it (as `&lt;b&gt;`)."""
    return func.replace(func.replace(func.replace(text, "&", "&amp;"), "<", "&lt;"), ">", "&gt;")


@dataclass
class TicketFilters:
    statuses: list[str] = field(default_factory=list)
    priorities: list[str] = field(default_factory=list)
    category_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    assignee: str | None = None
    """A user id, `me`, or `none` (unassigned)."""
    requester_id: uuid.UUID | None = None
    tag: str | None = None
    channel: str | None = None
    submitted_from: datetime | None = None
    submitted_to: datetime | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None


# The tenant-scoped view search runs on (migration 0007); not part of the ORM metadata.
SEARCH_SCOPE = Table(
    "ticket_search_scope",
    MetaData(),
    *(
        Column(name, Ticket.__table__.c[name].type)
        for name in (
            "id",
            "organization_id",
            "number",
            "subject",
            "description",
            "search_vector",
            "status",
            "priority",
            "category_id",
            "subcategory_id",
            "department_id",
            "requester_id",
            "assignee_id",
            "channel",
            "tags",
            "submitted_at",
            "updated_at",
        )
    ),
)


def conditions(viewer: Viewer, f: TicketFilters, t: Any) -> builtins.list[ColumnElement[bool]]:
    """Visibility plus list filters over `Ticket` or the search view's columns."""
    out: builtins.list[ColumnElement[bool]] = [viewer.ticket_filter(t)]
    if f.statuses:
        out.append(t.status.in_(f.statuses))
    if f.priorities:
        out.append(t.priority.in_(f.priorities))
    if f.category_id:
        out.append(or_(t.category_id == f.category_id, t.subcategory_id == f.category_id))
    if f.department_id:
        out.append(t.department_id == f.department_id)
    if f.assignee == "none":
        out.append(t.assignee_id.is_(None))
    elif f.assignee == "me":
        out.append(t.assignee_id == viewer.user.id)
    elif f.assignee:
        out.append(t.assignee_id == uuid.UUID(f.assignee))
    if f.requester_id:
        out.append(t.requester_id == f.requester_id)
    if f.tag:
        out.append(t.tags.contains([f.tag]))
    if f.channel:
        out.append(t.channel == f.channel)
    if f.submitted_from:
        out.append(t.submitted_at >= f.submitted_from)
    if f.submitted_to:
        out.append(t.submitted_at < f.submitted_to)
    if f.updated_from:
        out.append(t.updated_at >= f.updated_from)
    if f.updated_to:
        out.append(t.updated_at < f.updated_to)
    return out


SORTS = {
    "updated": (Ticket.updated_at,),
    "submitted": (Ticket.submitted_at,),
    "priority": (Ticket.priority_rank, Ticket.updated_at),
}


class TicketRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(
        self, viewer: Viewer, ticket_id: uuid.UUID, *, for_update: bool = False
    ) -> Ticket | None:
        query = select(Ticket).where(Ticket.id == ticket_id, viewer.ticket_filter())
        if for_update:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def get_unfiltered(self, ticket_id: uuid.UUID) -> Ticket | None:
        """The ticket whoever asks (RLS still scopes it to the organization)."""
        return await self.session.get(Ticket, ticket_id)

    async def count_all(self) -> int:
        """Tickets of the bound organization (RLS), regardless of who asks."""
        return int(
            (await self.session.execute(select(func.count()).select_from(Ticket))).scalar_one()
        )

    async def get_by_number(self, viewer: Viewer, number: str) -> Ticket | None:
        query = select(Ticket).where(Ticket.number == number.upper(), viewer.ticket_filter())
        return (await self.session.execute(query)).scalar_one_or_none()

    async def get_many_for_update(
        self, viewer: Viewer, ids: list[uuid.UUID]
    ) -> builtins.list[Ticket]:
        query = (
            select(Ticket)
            .where(Ticket.id.in_(ids), viewer.ticket_filter())
            .order_by(Ticket.id)
            .with_for_update()
        )
        return list((await self.session.execute(query)).scalars())

    def _filtered(self, viewer: Viewer, f: TicketFilters) -> Select[Ticket]:
        return select(Ticket).where(*conditions(viewer, f, Ticket))

    async def list(
        self,
        viewer: Viewer,
        filters: TicketFilters,
        *,
        sort: str,
        descending: bool,
        after: tuple[Any, ...] | None,
        limit: int,
    ) -> builtins.list[Ticket]:
        """Keyset pagination on (sort columns…, id)."""
        columns = (*SORTS[sort], Ticket.id)
        query = self._filtered(viewer, filters)
        if after is not None:
            key = tuple_(*columns)
            query = query.where(key < tuple_(*after) if descending else key > tuple_(*after))
        order = [c.desc() if descending else c.asc() for c in columns]
        query = query.order_by(*order).limit(limit)
        return list((await self.session.execute(query)).scalars())

    async def search(
        self,
        viewer: Viewer,
        filters: TicketFilters,
        text_query: str,
        *,
        fuzzy: bool,
        after: tuple[float, uuid.UUID] | None,
        limit: int,
    ) -> builtins.list[tuple[Ticket, float, str]]:
        """Full-text (weighted tsvector) and ticket-number-prefix matches, best first; with
        `fuzzy`, also subjects with a word like the query (pg_trgm).

        Matching runs on `ticket_search_scope` (tenant condition in the view, indexes usable),
        the page of tickets is then loaded by id through RLS like every other read.

        The fuzzy part is the expensive one (a trigram index scan, and a similarity per
        candidate: together about three quarters of a broad query's time at 1M tickets,
        benchmarks/README.md), so `tickets.service.search_tickets` asks for it only when the
        exact matches do not fill a page.
        """
        v = SEARCH_SCOPE.c
        tsq = func.websearch_to_tsquery("english", text_query)
        fts = v.search_vector.op("@@")(tsq)
        number_match = v.number.like(like_prefix(text_query.strip().upper()))
        score: ColumnElement[float] = func.ts_rank(v.search_vector, tsq) + case(
            (number_match, 10.0), else_=0.0
        )
        matching: ColumnElement[bool] = or_(fts, number_match)
        if fuzzy:
            # pg_trgm word similarity: the query is like a word (or run of words) of the
            # subject, so a misspelled word finds a long subject (`%` compares with the whole
            # subject).
            matching = or_(fts, v.subject.op("%>")(text_query), number_match)
            score = score + func.similarity(v.subject, text_query) * 0.5
        matches = (
            select(v.id, score.label("score"))
            .where(*conditions(viewer, filters, v), matching)
            .subquery()
        )
        hl = SEARCH_SCOPE.alias("hl")
        headline = func.ts_headline(
            "english",
            _html_escaped(hl.c.subject + literal(" — ") + func.left(hl.c.description, 2000)),
            tsq,
            f"StartSel={HL_START}, StopSel={HL_STOP}, MaxWords=30, MinWords=10, MaxFragments=2",
        )
        page = (
            select(matches.c.id, matches.c.score, headline)
            .join(hl, hl.c.id == matches.c.id)
            .order_by(matches.c.score.desc(), matches.c.id.desc())
            .limit(limit)
        )
        if after is not None:
            page = page.where(
                tuple_(matches.c.score, matches.c.id) < tuple_(literal(after[0]), literal(after[1]))
            )
        rows = (await self.session.execute(page)).all()
        if not rows:
            return []
        loaded = await self.session.execute(
            select(Ticket).where(Ticket.id.in_([r[0] for r in rows]), viewer.ticket_filter())
        )
        by_id = {t.id: t for t in loaded.scalars()}
        return [(by_id[r[0]], float(r[1] or 0), r[2] or "") for r in rows if r[0] in by_id]


class CategoryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, category_id: uuid.UUID) -> Category | None:
        return await self.session.get(Category, category_id)

    async def name_taken(self, name: str, *, exclude: uuid.UUID | None = None) -> bool:
        query = select(Category.id).where(func.lower(Category.name) == name.lower())
        if exclude is not None:
            query = query.where(Category.id != exclude)
        return (await self.session.execute(query)).first() is not None

    async def list(self, *, include_inactive: bool) -> builtins.list[Category]:
        query = select(Category).order_by(Category.sort_order, Category.name)
        if not include_inactive:
            query = query.where(Category.is_active.is_(True))
        return list((await self.session.execute(query)).scalars())

    async def has_children(self, category_id: uuid.UUID) -> bool:
        query = select(Category.id).where(Category.parent_id == category_id).limit(1)
        return (await self.session.execute(query)).first() is not None


class CommentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list(self, ticket_id: uuid.UUID, *, include_internal: bool) -> builtins.list[Comment]:
        query = select(Comment).where(Comment.ticket_id == ticket_id, Comment.deleted_at.is_(None))
        if not include_internal:
            query = query.where(Comment.is_internal.is_(False))
        query = query.order_by(Comment.created_at, Comment.id)
        return list((await self.session.execute(query)).scalars())

    async def get(
        self, ticket_id: uuid.UUID, comment_id: uuid.UUID, *, for_update: bool = False
    ) -> Comment | None:
        query = select(Comment).where(
            Comment.id == comment_id, Comment.ticket_id == ticket_id, Comment.deleted_at.is_(None)
        )
        if for_update:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def all_ids(self, ticket_id: uuid.UUID) -> builtins.list[uuid.UUID]:
        query = select(Comment.id).where(Comment.ticket_id == ticket_id)
        return list((await self.session.execute(query)).scalars())

    async def revisions(self, comment_id: uuid.UUID) -> builtins.list[CommentRevision]:
        query = (
            select(CommentRevision)
            .where(CommentRevision.comment_id == comment_id)
            .order_by(CommentRevision.created_at)
        )
        return list((await self.session.execute(query)).scalars())


class SavedViewRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list(self, user_id: uuid.UUID) -> builtins.list[SavedView]:
        query = select(SavedView).where(SavedView.user_id == user_id).order_by(SavedView.name)
        return list((await self.session.execute(query)).scalars())

    async def get(self, user_id: uuid.UUID, view_id: uuid.UUID) -> SavedView | None:
        query = select(SavedView).where(SavedView.id == view_id, SavedView.user_id == user_id)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def name_taken(
        self, user_id: uuid.UUID, name: str, exclude: uuid.UUID | None = None
    ) -> bool:
        query = select(SavedView.id).where(
            and_(SavedView.user_id == user_id, func.lower(SavedView.name) == name.lower())
        )
        if exclude:
            query = query.where(SavedView.id != exclude)
        return (await self.session.execute(query)).first() is not None


class AttachmentRepository:
    """Every attachment query; the tenant session's RLS scopes them to one organization."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _live(self, *, include_internal: bool) -> Select[Attachment]:
        query = (
            select(Attachment)
            .outerjoin(Comment, Comment.id == Attachment.comment_id)
            .where(
                Attachment.deleted_at.is_(None),
                or_(Attachment.comment_id.is_(None), Comment.deleted_at.is_(None)),
            )
        )
        if not include_internal:
            query = query.where(Attachment.is_internal.is_(False))
        return query

    async def deleted_before(self, cutoff: datetime, *, limit: int) -> builtins.list[Attachment]:
        """Attachments deleted (themselves or with their comment) before `cutoff`, oldest
        first, locked so that two purges never take the same rows."""
        query = (
            select(Attachment)
            .outerjoin(Comment, Comment.id == Attachment.comment_id)
            .where(
                or_(
                    Attachment.deleted_at < cutoff,
                    and_(Attachment.comment_id.is_not(None), Comment.deleted_at < cutoff),
                )
            )
            .order_by(Attachment.created_at, Attachment.id)
            .limit(limit)
            .with_for_update(of=Attachment, skip_locked=True)
        )
        return list((await self.session.execute(query)).scalars())

    async def list(
        self, ticket_id: uuid.UUID, *, include_internal: bool
    ) -> builtins.list[Attachment]:
        query = (
            self._live(include_internal=include_internal)
            .where(Attachment.ticket_id == ticket_id)
            .order_by(Attachment.created_at, Attachment.id)
        )
        return list((await self.session.execute(query)).scalars())

    async def get(
        self,
        attachment_id: uuid.UUID,
        *,
        include_internal: bool,
        ticket_id: uuid.UUID | None = None,
        for_update: bool = False,
    ) -> Attachment | None:
        query = self._live(include_internal=include_internal).where(Attachment.id == attachment_id)
        if ticket_id is not None:
            query = query.where(Attachment.ticket_id == ticket_id)
        if for_update:
            query = query.with_for_update(of=Attachment)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def all_ids(self, ticket_id: uuid.UUID) -> builtins.list[uuid.UUID]:
        """Every attachment of a ticket, deleted and internal ones included (staff history)."""
        query = select(Attachment.id).where(Attachment.ticket_id == ticket_id)
        return list((await self.session.execute(query)).scalars())
