"""Admin console: categories and the editor of their own fields.

A category's fields are posted as rows `fields-<n>-key`, `-label`, `-type`, `-required`,
`-min`, `-max`, `-choices` (comma-separated), `-help_text`; rows count in the order they come
(app.js adds, removes and moves them), and a row left entirely empty is ignored (the page
always offers one, so fields can be added without script). Each row is checked with
`tickets.fields.FieldDefinition` and the whole list by the category service
(`check_definitions`): the errors go next to the row.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from servicedesk.accounts import service as accounts
from servicedesk.core.actor import Actor
from servicedesk.core.errors import AppError
from servicedesk.models import Category, Priority
from servicedesk.tenancy.deps import CurrentTenant, TenantSession
from servicedesk.tickets import categories
from servicedesk.tickets.fields import FieldDefinition, FieldType
from servicedesk.tickets.schemas import CategoryCreate, CategoryUpdate
from servicedesk.web.admin import AdminPage, admin_context, notice_text
from servicedesk.web.forms import FORM_ERROR, FieldErrors, PostedForm, UserForm, app_errors
from servicedesk.web.forms import validation_errors as pydantic_errors
from servicedesk.web.session import redirect
from servicedesk.web.templating import render

router = APIRouter(include_in_schema=False)

_ROW = re.compile(r"^fields-([0-9]{1,4})-([a-z_]+)$")
ROW_ATTRS = ("key", "label", "type", "required", "min", "max", "choices", "help_text")
TYPE_LABELS = {
    FieldType.TEXT: "Short text",
    FieldType.LONG_TEXT: "Long text",
    FieldType.NUMBER: "Number",
    FieldType.MONEY: "Amount of money",
    FieldType.DATE: "Date",
    FieldType.SELECT: "One choice",
    FieldType.MULTI_SELECT: "Several choices",
    FieldType.BOOLEAN: "Yes / no",
    FieldType.COST_ITEMS: "Cost items",
}
NOTICES = {"created": "Category added.", "saved": "Category saved."}


def _bound(value: Any) -> str:
    if value is None:
        return ""
    number = float(value)
    return str(int(number)) if number.is_integer() else str(number)


def rows_of(definitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored definitions as editor rows (text values)."""
    rows = []
    for d in definitions:
        rows.append(
            {
                "key": d.get("key", ""),
                "label": d.get("label", ""),
                "type": d.get("type", "text"),
                "required": bool(d.get("required")),
                "min": _bound(d.get("min")),
                "max": _bound(d.get("max")),
                "choices": ", ".join(d.get("choices") or []),
                "help_text": d.get("help_text") or "",
                "min_date": d.get("min_date") or "",
                "max_date": d.get("max_date") or "",
            }
        )
    return rows


def posted_rows(form: PostedForm) -> list[dict[str, Any]]:
    """The editor's rows in the order they were posted; empty rows dropped."""
    rows: dict[str, dict[str, Any]] = {}
    for name, value in form.data.multi_items():
        match = _ROW.match(name)
        if not match or not isinstance(value, str):
            continue
        row = rows.setdefault(match.group(1), {})
        row[match.group(2)] = value
    result = []
    for raw in rows.values():
        row = {attr: raw.get(attr, "").strip() for attr in ROW_ATTRS}
        row["required"] = raw.get("required") == "1"
        row["min_date"] = raw.get("min_date", "")
        row["max_date"] = raw.get("max_date", "")
        if not row["key"] and not row["label"] and not row["choices"]:
            continue
        result.append(row)
    return result


def _definition_body(row: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "key": row["key"],
        "label": row["label"],
        "type": row["type"],
        "required": row["required"],
    }
    for attr in ("min", "max", "help_text", "min_date", "max_date"):
        if row.get(attr):
            body[attr] = row[attr]
    if row["choices"]:
        body["choices"] = [c.strip() for c in row["choices"].split(",") if c.strip()]
    return body


def check_rows(rows: list[dict[str, Any]]) -> tuple[list[FieldDefinition], FieldErrors]:
    """Each row through `FieldDefinition`: errors named `fields.<i>.<attr>` (or the row)."""
    definitions: list[FieldDefinition] = []
    errors: FieldErrors = {}
    for i, row in enumerate(rows):
        try:
            definitions.append(FieldDefinition.model_validate(_definition_body(row)))
        except ValidationError as exc:
            for name, message in pydantic_errors(exc).items():
                target = f"fields.{i}.{name}" if name in ROW_ATTRS else f"fields.{i}"
                if name == FORM_ERROR and "choices" in message:
                    target = f"fields.{i}.choices"
                errors.setdefault(target, message)
    return definitions, errors


def _service_errors(exc: AppError, rows: list[dict[str, Any]]) -> FieldErrors:
    """A service's errors by form field; duplicate keys go next to each row with the key."""
    if exc.code == "category_name_taken":
        return {"name": exc.detail}
    if exc.code == "duplicate_field_key":
        errors: FieldErrors = {FORM_ERROR: exc.detail}
        keys = {str(e["loc"][-1]) for e in exc.errors or []}
        for i, row in enumerate(rows):
            if row["key"] in keys:
                errors[f"fields.{i}.key"] = "Another field has this key."
        return errors
    return app_errors(exc)


async def _editor(
    request: Request,
    session: AsyncSession,
    *,
    category: Category | None,
    values: dict[str, Any],
    rows: list[dict[str, Any]],
    errors: FieldErrors | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> Response:
    cats = await categories.list_categories(session, include_inactive=True)
    departments = await accounts.list_departments(session, include_inactive=False)
    parents = [c for c in cats if c.parent_id is None and (category is None or c.id != category.id)]
    return render(
        request,
        "admin/category.html",
        {
            **await admin_context(session, "categories"),
            "category": category,
            "parent": next((c for c in cats if category and c.id == category.parent_id), None),
            "values": values,
            "rows": rows,
            "errors": errors or {},
            "parents": [(str(c.id), c.name) for c in parents if c.is_active],
            "departments": [(str(d.id), d.name) for d in departments],
            "priorities": [(p.value, p.value.capitalize()) for p in Priority],
            "types": [(t.value, label) for t, label in TYPE_LABELS.items()],
            "notice": NOTICES.get(notice or ""),
        },
        status_code=status_code,
    )


@router.get("/admin/categories")
async def categories_page(
    request: Request,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    cats = await categories.list_categories(session, include_inactive=True)
    departments = {d.id: d for d in await accounts.list_departments(session)}
    tops = [c for c in cats if c.parent_id is None]
    children = {c.id: [s for s in cats if s.parent_id == c.id] for c in tops}
    return render(
        request,
        "admin/categories.html",
        {
            **await admin_context(session, "categories"),
            "tops": tops,
            "children": children,
            "departments": departments,
            "notice": NOTICES.get(notice or "") or notice_text(notice),
        },
    )


_BLANK = {
    "name": "",
    "description": "",
    "parent_id": "",
    "default_priority": "medium",
    "department_id": "",
    "is_active": True,
}


@router.get("/admin/categories/new")
async def new_category(
    request: Request, tenant: CurrentTenant, session: TenantSession, admin: AdminPage
) -> Response:
    return await _editor(request, session, category=None, values=dict(_BLANK), rows=[])


@router.get("/admin/categories/{category_id}")
async def category_page(
    request: Request,
    category_id: uuid.UUID,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
    notice: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    category = await categories.access_category(session, category_id)
    values = {
        "name": category.name,
        "description": category.description or "",
        "parent_id": str(category.parent_id or ""),
        "default_priority": category.default_priority,
        "department_id": str(category.department_id or ""),
        "is_active": category.is_active,
    }
    return await _editor(
        request,
        session,
        category=category,
        values=values,
        rows=rows_of(category.fields),
        notice=notice,
    )


def _form_values(form: PostedForm) -> dict[str, Any]:
    values: dict[str, Any] = form.values(
        "name", "description", "parent_id", "default_priority", "department_id"
    )
    values["is_active"] = form.get("is_active") == "1"
    return values


async def _save(
    request: Request,
    form: PostedForm,
    session: AsyncSession,
    *,
    category: Category | None,
    organization_id: uuid.UUID,
    actor: Actor,
) -> Response:
    values = _form_values(form)
    rows = posted_rows(form)
    definitions, errors = check_rows(rows)
    body: dict[str, Any] = {
        "name": values["name"],
        "description": values["description"].strip() or None,
        "default_priority": values["default_priority"],
        "department_id": values["department_id"] or None,
    }
    model: type[CategoryCreate] | type[CategoryUpdate]
    if category is None:
        body["parent_id"] = values["parent_id"] or None
        model = CategoryCreate
    else:
        body["is_active"] = values["is_active"]
        model = CategoryUpdate
    try:
        data = model.model_validate(body)
    except ValidationError as exc:
        errors.update(pydantic_errors(exc))
        data = None
    saved: Category | None = None
    if data is not None and not errors:
        data.fields = definitions
        try:
            async with session.begin_nested():
                if isinstance(data, CategoryCreate):
                    saved = await categories.create_category(
                        session, data, organization_id=organization_id, actor=actor
                    )
                else:
                    assert category is not None
                    saved = await categories.update_category(
                        session, category.id, data, actor=actor
                    )
        except AppError as exc:
            errors = _service_errors(exc, rows)
    if saved is None:
        errors.setdefault(FORM_ERROR, "Check the highlighted fields.")
        if category is not None:
            await session.refresh(category)
        return await _editor(
            request,
            session,
            category=category,
            values=values,
            rows=rows,
            errors=errors,
            status_code=422,
        )
    notice = "created" if category is None else "saved"
    return redirect(request, f"/admin/categories/{saved.id}?notice={notice}")


@router.post("/admin/categories/new")
async def create_category(
    request: Request,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
) -> Response:
    return await _save(
        request,
        form,
        session,
        category=None,
        organization_id=tenant.id,
        actor=Actor.user(admin.id),
    )


@router.post("/admin/categories/{category_id}")
async def save_category(
    request: Request,
    category_id: uuid.UUID,
    form: UserForm,
    tenant: CurrentTenant,
    session: TenantSession,
    admin: AdminPage,
) -> Response:
    category = await categories.access_category(session, category_id)
    return await _save(
        request,
        form,
        session,
        category=category,
        organization_id=tenant.id,
        actor=Actor.user(admin.id),
    )
