"""A category's own fields in forms: the choice of category, the values posted, their display.

The validation itself is the ticket service's (`tickets.fields.validate_values`); this module
only turns form text into the JSON values the service checks (a number field's text becomes a
number when it reads as one, and is passed on as text otherwise, so the service names the
error), and the stored values back into text for the page.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from servicedesk.tickets.fields import FieldDefinition, FieldType, cost_total
from servicedesk.tickets.schemas import CategoryRead
from servicedesk.web.forms import PostedForm

SEPARATOR = " \u203a "
"""Between a category and its sub-category in labels (a single right-pointing angle quote)."""
COST_ITEM_ROWS = 3
"""Empty cost-item rows a new form shows (more can be added with the "Add item" button)."""


@dataclass(frozen=True)
class CategoryOption:
    value: str
    """`<category id>` or `<category id>/<sub-category id>`."""
    label: str
    description: str | None


def category_options(categories: list[CategoryRead]) -> list[CategoryOption]:
    """Active top-level categories, each followed by its active sub-categories."""
    active = [c for c in categories if c.is_active]
    options: list[CategoryOption] = []
    for parent in (c for c in active if c.parent_id is None):
        options.append(CategoryOption(str(parent.id), parent.name, parent.description))
        for child in (c for c in active if c.parent_id == parent.id):
            options.append(
                CategoryOption(
                    f"{parent.id}/{child.id}",
                    parent.name + SEPARATOR + child.name,
                    child.description or parent.description,
                )
            )
    return options


def resolve_choice(
    value: str | None, categories: list[CategoryRead]
) -> tuple[CategoryRead, CategoryRead | None] | None:
    """The (category, sub-category) a form's choice names, among the active ones."""
    if not value:
        return None
    by_id = {str(c.id): c for c in categories if c.is_active}
    parent_id, _, child_id = value.partition("/")
    parent = by_id.get(parent_id)
    if parent is None or parent.parent_id is not None:
        return None
    if not child_id:
        return parent, None
    child = by_id.get(child_id)
    if child is None or child.parent_id != parent.id:
        return None
    return parent, child


def definitions(category: CategoryRead, sub: CategoryRead | None) -> list[FieldDefinition]:
    """The category's fields, then the sub-category's."""
    raw = category.fields + (sub.fields if sub else [])
    return [FieldDefinition.model_validate(d) for d in raw]


def input_name(definition: FieldDefinition) -> str:
    return f"cf.{definition.key}"


def _number(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text  # the service answers "must be a number" next to the field


def read_values(
    defs: list[FieldDefinition], form: PostedForm
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values for the service, what to show in the form again)."""
    values: dict[str, Any] = {}
    raw: dict[str, Any] = {}
    for d in defs:
        name = input_name(d)
        if d.type == FieldType.MULTI_SELECT:
            chosen = form.getlist(name)
            raw[d.key] = chosen
            if chosen or d.required:
                values[d.key] = chosen
        elif d.type == FieldType.BOOLEAN:
            checked = form.get(name) == "true"
            raw[d.key] = checked
            values[d.key] = checked
        elif d.type == FieldType.COST_ITEMS:
            rows = list(
                zip(
                    form.getlist(name + ".description"),
                    form.getlist(name + ".quantity"),
                    form.getlist(name + ".unit_cost"),
                    strict=False,
                )
            )
            filled = [r for r in rows if any(part.strip() for part in r)]
            raw[d.key] = [{"description": a, "quantity": b, "unit_cost": c} for a, b, c in filled]
            if filled or d.required:
                values[d.key] = [
                    {
                        "description": a.strip(),
                        "quantity": _number(b.strip()),
                        "unit_cost": c.strip(),
                    }
                    for a, b, c in filled
                ]
        else:
            text = form.get(name)
            raw[d.key] = text
            if not text.strip():
                if d.required:
                    values[d.key] = None  # "is required"
                continue
            values[d.key] = _number(text.strip()) if d.type == FieldType.NUMBER else text
    return values, raw


@dataclass(frozen=True)
class ShownValue:
    label: str
    text: str
    items: list[dict[str, Any]] | None = None
    total: str | None = None


def shown_values(defs: list[FieldDefinition], values: dict[str, Any]) -> list[ShownValue]:
    """The stored values of a ticket, as text, in the order of the form."""
    shown: list[ShownValue] = []
    known = set()
    for d in defs:
        known.add(d.key)
        if d.key not in values:
            continue
        value = values[d.key]
        if d.type == FieldType.COST_ITEMS and isinstance(value, list):
            shown.append(ShownValue(d.label, "", items=value, total=cost_total(value)))
        elif d.type == FieldType.BOOLEAN:
            shown.append(ShownValue(d.label, "Yes" if value else "No"))
        elif isinstance(value, list):
            shown.append(ShownValue(d.label, ", ".join(str(v) for v in value)))
        else:
            shown.append(ShownValue(d.label, str(value)))
    # Values of fields removed from the category since stay readable.
    for key, value in values.items():
        if key not in known and not isinstance(value, list | dict):
            shown.append(ShownValue(key.replace("_", " ").capitalize(), str(value)))
    return shown


def category_label(
    categories: dict[uuid.UUID, CategoryRead], category_id: uuid.UUID, sub_id: uuid.UUID | None
) -> str:
    parent = categories.get(category_id)
    name = parent.name if parent else "—"
    if sub_id and sub_id in categories:
        name += SEPARATOR + categories[sub_id].name
    return name
