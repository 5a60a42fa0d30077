"""Saved views from the agent queue: save the current filters under a name, rename, delete.

A user only ever sees and changes their own views (anything else is the same 404). A form with
errors comes back on the queue page itself, with the input kept (`request.state.view_form`).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.core.errors import AppError, NotFound
from servicedesk.models import SavedView, User
from servicedesk.tenancy.deps import CurrentTenant, TenantSession
from servicedesk.tenancy.service import Tenant
from servicedesk.tickets import views
from servicedesk.web.agent import SORTS, TABS, QueueQuery, _one_of, _staff, queue
from servicedesk.web.forms import FORM_ERROR, FieldErrors, PostedForm, UserForm
from servicedesk.web.session import PageUser, redirect

router = APIRouter(prefix="/agent", include_in_schema=False)

VIEW_NAME_MAX = 100


def _view_name_error(name: str) -> str | None:
    if not name:
        return "Give the view a name."
    if len(name) > VIEW_NAME_MAX:
        return f"At most {VIEW_NAME_MAX} characters."
    return None


async def _view_id(session: AsyncSession, user: User, raw: str) -> uuid.UUID:
    """The id of one of the user's own views; anything else (someone else's, another
    organization's, not an id) is the same 404."""
    try:
        view_id = uuid.UUID(raw)
    except ValueError:
        raise NotFound("Saved view not found.") from None
    return (await views.get_view(session, user.id, view_id)).id


def _current_filters(
    form: PostedForm, saved: list[SavedView]
) -> tuple[dict[str, str], views.ViewFilters | None]:
    """The queue's state as the save form posted it, and the filters a view stores for it: the
    tab's own filters (a queue's, or the view's), then the filter form's on top."""
    state = {k: form.get(k).strip() for k in ("tab", "status", "priority", "category", "assignee")}
    state["sort"] = _one_of(form.get("sort"), set(SORTS)) or "updated"
    state["q"] = form.get("q").strip()[:200]
    data: dict[str, Any] = {}
    shown = next((v for v in saved if f"view-{v.id}" == state["tab"]), None)
    if shown is not None:
        data = dict(shown.filters)
    elif state["tab"] in TABS:
        base = TABS[state["tab"]][1]
        data["status"] = list(base.statuses)
        if base.assignee:
            data["assignee"] = base.assignee
    for key, target in (("status", "status"), ("priority", "priority")):
        if state[key]:
            data[target] = [state[key]]
    if state["category"]:
        data["category_id"] = state["category"]
    if state["assignee"]:
        data["assignee"] = state["assignee"]
    if state["q"]:
        data["q"] = state["q"]
    if "sort" in data or state["sort"] != "updated":
        data["sort"] = state["sort"]
    try:
        return state, views.ViewFilters.model_validate(data)
    except ValidationError:
        return state, None


async def _queue_with_form(
    request: Request,
    tenant: Tenant,
    session: AsyncSession,
    user: User,
    state: dict[str, str],
    form: dict[str, Any],
) -> Response:
    """The queue again, in the state it was posted from, with the view form and its errors."""
    request.state.view_form = form
    response = await queue(
        request,
        tenant,
        session,
        user,
        QueueQuery(
            tab=state.get("tab") or "mine",
            status=state.get("status") or None,
            priority=state.get("priority") or None,
            category=state.get("category") or None,
            assignee=state.get("assignee") or None,
            sort=state.get("sort") or "updated",
            q=state.get("q") or None,
        ),
        cursor=None,
        notice=None,
    )
    response.status_code = 422
    return response


@router.post("/views")
async def save_view(
    request: Request,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
) -> Response:
    _staff(user, tenant)
    name = form.get("view_name").strip()
    saved = await views.list_views(session, user.id)
    state, filters = _current_filters(form, saved)
    errors: FieldErrors = {}
    if error := _view_name_error(name):
        errors["view_name"] = error
    elif filters is None:
        errors[FORM_ERROR] = "These filters cannot be saved; reset them and try again."
    else:
        try:
            async with session.begin_nested():
                view = await views.create_view(
                    session,
                    organization_id=tenant.id,
                    user_id=user.id,
                    data=views.SavedViewCreate(name=name, filters=filters),
                )
        except AppError as exc:
            if exc.status >= 500:
                raise
            errors["view_name"] = exc.detail
        else:
            return redirect(request, f"/agent?tab=view-{view.id}&notice=view_saved")
    form_state = {"kind": "save", "name": name, "errors": errors}
    return await _queue_with_form(request, tenant, session, user, state, form_state)


@router.post("/views/{view_id}")
async def rename_view(
    request: Request,
    view_id: str,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
) -> Response:
    _staff(user, tenant)
    found = await _view_id(session, user, view_id)
    name = form.get("new_name").strip()
    errors: FieldErrors = {}
    if error := _view_name_error(name):
        errors["new_name"] = error
    else:
        try:
            async with session.begin_nested():
                await views.update_view(session, user.id, found, views.SavedViewUpdate(name=name))
        except AppError as exc:
            if exc.status >= 500:
                raise
            errors["new_name"] = exc.detail
        else:
            return redirect(request, f"/agent?tab=view-{found}&notice=view_renamed")
    state = {"tab": f"view-{found}"}
    form_state = {"kind": "rename", "name": name, "errors": errors}
    return await _queue_with_form(request, tenant, session, user, state, form_state)


@router.post("/views/{view_id}/delete")
async def delete_view(
    request: Request,
    view_id: str,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    user: PageUser,
) -> Response:
    _staff(user, tenant)
    await views.delete_view(session, user.id, await _view_id(session, user, view_id))
    return redirect(request, "/agent?notice=view_deleted")
