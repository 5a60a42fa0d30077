"""Category-specific fields: their definitions and the validation of ticket values.

A category carries a list of `FieldDefinition`s. Ticket values are validated against the
definition in force when they are written; changing a definition later never touches stored
values (old tickets keep what they had, and stay readable).
"""

from __future__ import annotations

import enum
import math
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from servicedesk.core.errors import Unprocessable
from servicedesk.core.text import plain, strip_control


class FieldType(enum.StrEnum):
    TEXT = "text"
    LONG_TEXT = "long_text"
    NUMBER = "number"
    MONEY = "money"
    DATE = "date"
    SELECT = "select"
    MULTI_SELECT = "multi_select"
    BOOLEAN = "boolean"
    COST_ITEMS = "cost_items"


TEXT_LIMITS = {FieldType.TEXT: 500, FieldType.LONG_TEXT: 10_000}
MAX_COST_ITEMS = 100

Choice = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class FieldDefinition(BaseModel):
    """One field of a category's form."""

    model_config = ConfigDict(extra="forbid")

    key: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    type: FieldType
    required: bool = False
    help_text: Annotated[str, StringConstraints(max_length=300)] | None = None
    min: float | None = None
    """Numbers and money: smallest value; text: shortest length; cost items: fewest items."""
    max: float | None = None
    min_date: date | None = None
    max_date: date | None = None
    choices: list[Choice] | None = Field(None, max_length=200)

    @model_validator(mode="after")
    def _consistent(self) -> FieldDefinition:
        if self.type in (FieldType.SELECT, FieldType.MULTI_SELECT):
            if not self.choices:
                raise ValueError(f"a {self.type} field needs choices")
            if len(set(self.choices)) != len(self.choices):
                raise ValueError("choices must be unique")
        elif self.choices:
            raise ValueError(f"a {self.type} field takes no choices")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        if self.min_date and self.max_date and self.min_date > self.max_date:
            raise ValueError("min_date is after max_date")
        for bound in (self.min, self.max):
            if bound is not None and not math.isfinite(bound):
                raise ValueError("bounds must be finite numbers")
        return self


def check_definitions(definitions: list[FieldDefinition]) -> None:
    keys = [d.key for d in definitions]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise Unprocessable(
            f"Field keys must be unique: {', '.join(duplicates)}.",
            code="duplicate_field_key",
            errors=[
                {"loc": ["body", "fields", k], "msg": "duplicate key", "type": "duplicate"}
                for k in duplicates
            ],
        )


class _Bad(ValueError):
    pass


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad("must be a number")
    if not math.isfinite(value):
        raise _Bad("must be a finite number")
    return float(value)


def _money(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Bad("must be an amount like 1250.00")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise _Bad("must be an amount like 1250.00") from exc
    if not amount.is_finite():
        raise _Bad("must be a finite amount")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise _Bad("has more than two decimals")
    if abs(amount) >= Decimal("1e13"):
        raise _Bad("is too large")
    return amount.quantize(Decimal("0.01"))


def _bounds(d: FieldDefinition, n: float | Decimal, what: str = "") -> None:
    if d.min is not None and n < Decimal(str(d.min)):
        raise _Bad(f"must be at least {d.min:g}{what}")
    if d.max is not None and n > Decimal(str(d.max)):
        raise _Bad(f"must be at most {d.max:g}{what}")


def _clean(d: FieldDefinition, value: Any) -> Any:
    if d.type in (FieldType.TEXT, FieldType.LONG_TEXT):
        if not isinstance(value, str):
            raise _Bad("must be text")
        text = plain(value) if d.type == FieldType.TEXT else strip_control(value).strip()
        limit = int(d.max) if d.max is not None else TEXT_LIMITS[d.type]
        if len(text) > min(limit, TEXT_LIMITS[d.type]):
            raise _Bad(f"must be at most {min(limit, TEXT_LIMITS[d.type])} characters")
        if d.min is not None and len(text) < d.min:
            raise _Bad(f"must be at least {d.min:g} characters")
        if d.required and not text:
            raise _Bad("is required")
        return text
    if d.type == FieldType.NUMBER:
        n = _number(value)
        _bounds(d, Decimal(str(n)))
        return int(n) if n.is_integer() and isinstance(value, int) else n
    if d.type == FieldType.MONEY:
        amount = _money(value)
        _bounds(d, amount)
        return str(amount)
    if d.type == FieldType.DATE:
        if not isinstance(value, str):
            raise _Bad("must be a date like 2026-12-31")
        try:
            day = date.fromisoformat(value.strip())
        except ValueError as exc:
            raise _Bad("must be a date like 2026-12-31") from exc
        if d.min_date and day < d.min_date:
            raise _Bad(f"must be on or after {d.min_date.isoformat()}")
        if d.max_date and day > d.max_date:
            raise _Bad(f"must be on or before {d.max_date.isoformat()}")
        return day.isoformat()
    if d.type == FieldType.SELECT:
        if not isinstance(value, str) or value not in (d.choices or []):
            raise _Bad(f"must be one of: {', '.join(d.choices or [])}")
        return value
    if d.type == FieldType.MULTI_SELECT:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _Bad("must be a list of choices")
        unknown = [v for v in value if v not in (d.choices or [])]
        if unknown:
            raise _Bad(f"has unknown choices: {', '.join(unknown[:5])}")
        if d.required and not value:
            raise _Bad("needs at least one choice")
        return list(dict.fromkeys(value))
    if d.type == FieldType.BOOLEAN:
        if not isinstance(value, bool):
            raise _Bad("must be true or false")
        return value
    if d.type == FieldType.COST_ITEMS:
        return _cost_items(d, value)
    raise _Bad("has an unknown type")  # pragma: no cover - FieldType is closed


def _cost_items(d: FieldDefinition, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _Bad("must be a list of {description, quantity, unit_cost}")
    if len(value) > MAX_COST_ITEMS:
        raise _Bad(f"may have at most {MAX_COST_ITEMS} items")
    if d.min is not None and len(value) < d.min:
        raise _Bad(f"needs at least {d.min:g} items")
    if d.max is not None and len(value) > d.max:
        raise _Bad(f"may have at most {d.max:g} items")
    if d.required and not value:
        raise _Bad("needs at least one item")
    items = []
    for i, item in enumerate(value, start=1):
        if not isinstance(item, dict) or set(item) != {"description", "quantity", "unit_cost"}:
            raise _Bad(f"item {i} must have exactly description, quantity and unit_cost")
        description = item["description"]
        if not isinstance(description, str) or not plain(description):
            raise _Bad(f"item {i} needs a description")
        if len(plain(description)) > 200:
            raise _Bad(f"item {i}: description is longer than 200 characters")
        quantity = _number(item["quantity"])
        if quantity <= 0:
            raise _Bad(f"item {i}: quantity must be greater than 0")
        unit_cost = _money(item["unit_cost"])
        if unit_cost < 0:
            raise _Bad(f"item {i}: unit cost must not be negative")
        items.append(
            {
                "description": plain(description),
                "quantity": int(quantity) if quantity.is_integer() else quantity,
                "unit_cost": str(unit_cost),
            }
        )
    return items


def cost_total(items: list[dict[str, Any]]) -> str:
    total = sum((Decimal(str(i["quantity"])) * Decimal(i["unit_cost"]) for i in items), Decimal(0))
    return str(total.quantize(Decimal("0.01")))


def validate_values(
    definitions: list[dict[str, Any]],
    values: dict[str, Any],
    *,
    existing: dict[str, Any] | None = None,
    loc: str = "custom_fields",
) -> dict[str, Any]:
    """Validate `values` against a category's definitions; 422 naming every bad field.

    With `existing` (an update), only the sent keys are checked, merged over the stored ones;
    required fields must still end up present.
    """
    defs = {d["key"]: FieldDefinition.model_validate(d) for d in definitions}
    errors: list[dict[str, Any]] = []
    cleaned: dict[str, Any] = dict(existing or {})
    for key, value in values.items():
        definition = defs.get(key)
        if definition is None:
            errors.append({"loc": ["body", loc, key], "msg": "unknown field", "type": "unknown"})
            continue
        if value is None:
            if definition.required:
                errors.append({"loc": ["body", loc, key], "msg": "is required", "type": "required"})
            cleaned.pop(key, None)
            continue
        try:
            cleaned[key] = _clean(definition, value)
        except _Bad as exc:
            errors.append({"loc": ["body", loc, key], "msg": str(exc), "type": "invalid"})
    for key, definition in defs.items():
        if definition.required and key not in cleaned and key not in values:
            errors.append({"loc": ["body", loc, key], "msg": "is required", "type": "required"})
    if errors:
        names = ", ".join(sorted({str(e["loc"][-1]) for e in errors}))
        raise Unprocessable(
            f"Some fields of this category are invalid: {names}.",
            code="invalid_custom_fields",
            errors=errors,
        )
    return cleaned
