"""Categories: names, one level of sub-categories, defaults applied to new tickets, field
definitions of every type and their validation, and definition changes that leave existing
tickets alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import Session, client_for
from tests.ticket_helpers import (
    CATEGORIES,
    TICKETS,
    Desk,
    budget_values,
    desk_fixture,  # noqa: F401
    error_keys,
    it_values,
    make_category,
    problem,
)

API_AUDIT = "/api/v1/audit-log"

EVERY_TYPE: list[dict[str, Any]] = [
    {"key": "title", "label": "Title", "type": "text", "required": True, "min": 3, "max": 20},
    {"key": "notes", "label": "Notes", "type": "long_text", "max": 50},
    {"key": "units", "label": "Units", "type": "number", "min": 1, "max": 10},
    {"key": "amount", "label": "Amount", "type": "money", "min": 0, "max": 5000},
    {
        "key": "due",
        "label": "Due",
        "type": "date",
        "min_date": "2026-01-01",
        "max_date": "2030-12-31",
    },
    {"key": "color", "label": "Color", "type": "select", "choices": ["red", "green"]},
    {"key": "tags", "label": "Labels", "type": "multi_select", "choices": ["a", "b", "c"]},
    {"key": "urgent", "label": "Urgent", "type": "boolean"},
    {"key": "costs", "label": "Costs", "type": "cost_items", "min": 1, "max": 3},
]

GOOD_VALUES: dict[str, Any] = {
    "title": "  Projector  ",
    "notes": "Line one\nLine two",
    "units": 3,
    "amount": "1250.5",
    "due": "2027-03-15",
    "color": "green",
    "tags": ["a", "c", "a"],
    "urgent": False,
    "costs": [{"description": "Cable", "quantity": 2, "unit_cost": "9.99"}],
}


async def test_realistic_categories_are_seeded_with_their_definitions(desk: Desk) -> None:
    r = await desk.client.get(CATEGORIES, headers=desk.requester.headers)
    assert r.status_code == 200, r.text
    by_name = {c["name"]: c for c in r.json()}
    assert set(by_name) == {"IT Support", "Hardware", "Budget Request"}
    it = by_name["IT Support"]
    assert [f["key"] for f in it["fields"]] == [
        "asset_name",
        "serial_number",
        "issue_type",
        "other_issue",
    ]
    issue_type = next(f for f in it["fields"] if f["key"] == "issue_type")
    assert issue_type["required"] is True and "Other" in issue_type["choices"]
    budget = by_name["Budget Request"]
    assert {f["key"]: f["type"] for f in budget["fields"]} == {
        "cost_items": "cost_items",
        "requested_budget": "money",
        "performance_start": "date",
        "performance_end": "date",
        "approved_by": "text",
    }
    assert by_name["Hardware"]["parent_id"] == it["id"]
    r = await desk.client.get(f"{CATEGORIES}/{budget['id']}", headers=desk.agent.headers)
    assert r.status_code == 200 and r.json()["default_priority"] == "low"


async def test_name_is_unique_per_organization_case_insensitively(
    desk: Desk, other_org: Any, make_user: Any, login: Any
) -> None:
    r = await desk.client.post(CATEGORIES, json={"name": "it support"}, headers=desk.admin.headers)
    problem(r, 409, "category_name_taken")
    r = await desk.client.post(
        CATEGORIES, json={"name": "  IT SUPPORT  "}, headers=desk.admin.headers
    )
    problem(r, 409, "category_name_taken")
    # Renaming onto another category's name conflicts too; renaming oneself is fine.
    r = await desk.client.patch(
        f"{CATEGORIES}/{desk.budget['id']}", json={"name": "IT support"}, headers=desk.admin.headers
    )
    problem(r, 409, "category_name_taken")
    r = await desk.client.patch(
        f"{CATEGORIES}/{desk.it['id']}", json={"name": "IT SUPPORT"}, headers=desk.admin.headers
    )
    assert r.status_code == 200 and r.json()["name"] == "IT SUPPORT", r.text
    # Another organization may use the same name.
    other_admin = await login(await make_user(other_org, "admin"), other_org)
    other = await make_category(desk.client, other_admin, name="IT Support")
    assert other["id"] != desk.it["id"]


async def test_concurrent_creates_of_one_name_make_one_category(desk: Desk, app: object) -> None:
    clients = [client_for(app) for _ in range(5)]
    try:
        responses = await asyncio.gather(
            *(
                c.post(
                    CATEGORIES, json={"name": f"Facilities{' ' * i}"}, headers=desk.admin.headers
                )
                for i, c in enumerate(clients)
            )
        )
    finally:
        for c in clients:
            await c.aclose()
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409], [
        r.text for r in responses
    ]
    r = await desk.client.get(CATEGORIES, headers=desk.admin.headers)
    assert [c["name"] for c in r.json()].count("Facilities") == 1


async def test_sub_categories_are_one_level_deep(desk: Desk) -> None:
    r = await desk.client.post(
        CATEGORIES,
        json={"name": "Laptops", "parent_id": desk.hardware["id"]},
        headers=desk.admin.headers,
    )
    body = problem(r, 422, "invalid_parent")
    assert error_keys(body) == {"parent_id"}
    r = await desk.client.post(
        CATEGORIES,
        json={"name": "Software", "parent_id": desk.it["id"]},
        headers=desk.admin.headers,
    )
    assert r.status_code == 201 and r.json()["parent_id"] == desk.it["id"], r.text
    r = await desk.client.post(
        CATEGORIES,
        json={"name": "Orphan", "parent_id": "00000000-0000-4000-8000-000000000000"},
        headers=desk.admin.headers,
    )
    problem(r, 422)


async def test_default_priority_and_department_apply_to_new_tickets(desk: Desk) -> None:
    it_ticket = await desk.file()
    assert it_ticket["priority"] == "high"
    assert it_ticket["department_id"] == desk.it_dept["id"]
    budget_ticket = await desk.file(category=desk.budget)
    assert budget_ticket["priority"] == "low"
    assert budget_ticket["department_id"] == desk.finance_dept["id"]
    # A sub-category's own default priority wins; its department falls back to the parent's.
    hardware_ticket = await desk.file(category=desk.hardware)
    assert hardware_ticket["priority"] == "critical"
    assert hardware_ticket["subcategory_id"] == desk.hardware["id"]
    assert hardware_ticket["department_id"] == desk.it_dept["id"]
    # An explicit priority beats the default.
    explicit = await desk.file(priority="medium")
    assert explicit["priority"] == "medium"
    # A later change of the defaults applies to new tickets only.
    r = await desk.client.patch(
        f"{CATEGORIES}/{desk.it['id']}",
        json={"default_priority": "low", "department_id": desk.finance_dept["id"]},
        headers=desk.admin.headers,
    )
    assert r.status_code == 200, r.text
    later = await desk.file()
    assert later["priority"] == "low" and later["department_id"] == desk.finance_dept["id"]
    again = await desk.get(it_ticket)
    assert again["priority"] == "high" and again["department_id"] == desk.it_dept["id"]


async def test_fields_of_every_type_store_normalised_values(desk: Desk) -> None:
    cat = await make_category(desk.client, desk.admin, name="Everything", fields=EVERY_TYPE)
    assert [f["type"] for f in cat["fields"]] == [f["type"] for f in EVERY_TYPE]
    ticket = await desk.file(category=cat, custom_fields=GOOD_VALUES)
    assert ticket["custom_fields"] == {
        "title": "Projector",
        "notes": "Line one\nLine two",
        "units": 3,
        "amount": "1250.50",
        "due": "2027-03-15",
        "color": "green",
        "tags": ["a", "c"],
        "urgent": False,
        "costs": [{"description": "Cable", "quantity": 2, "unit_cost": "9.99"}],
    }
    assert (await desk.get(ticket))["custom_fields"] == ticket["custom_fields"]


BAD_VALUES: dict[str, Any] = {
    "title": "ab",  # shorter than min 3
    "notes": "x" * 51,  # longer than max 50
    "units": 11,  # above max
    "amount": "12.345",  # three decimals
    "due": "2031-01-01",  # after max_date
    "color": "blue",  # not a choice
    "tags": ["a", "z"],  # unknown choice
    "urgent": "yes",  # not a boolean
    "costs": [],  # fewer than min 1 item
}


async def test_every_bad_field_is_named_at_once(desk: Desk) -> None:
    cat = await make_category(desk.client, desk.admin, name="Everything", fields=EVERY_TYPE)
    r = await desk.client.post(
        TICKETS,
        json=desk.ticket_body(cat, custom_fields={**BAD_VALUES, "nonsense": 1}),
        headers=desk.requester.headers,
    )
    body = problem(r, 422, "invalid_custom_fields")
    assert error_keys(body) == {*BAD_VALUES, "nonsense"}
    assert all(e["loc"][:2] == ["body", "custom_fields"] for e in body["errors"])


ONE_BAD_VALUE: list[tuple[str, Any]] = [
    ("title", 42),
    ("title", "x" * 21),
    ("units", "3"),
    ("units", True),
    ("units", 0),
    ("amount", -1),
    ("amount", "NaN"),
    ("amount", "1,000"),
    ("amount", 5000.01),
    ("due", "2026-02-30"),
    ("due", "2025-12-31"),
    ("due", 20270101),
    ("color", "Green"),
    ("tags", "a"),
    ("urgent", 1),
    ("costs", [{"description": "Cable", "quantity": 0, "unit_cost": "1"}]),
    ("costs", [{"description": "Cable", "quantity": 1, "unit_cost": "1"}] * 4),  # over max 3
    ("costs", [{"description": "Cable", "quantity": 1, "unit_cost": "-1"}]),
    ("costs", [{"description": "", "quantity": 1, "unit_cost": "1"}]),
    ("costs", [{"description": "Cable", "quantity": 1}]),
    ("costs", [{"description": "Cable", "quantity": 1, "unit_cost": "1", "vat": 1}]),
    ("costs", [{"description": "Cable", "quantity": "1", "unit_cost": "1"}]),
    ("costs", {"description": "Cable", "quantity": 1, "unit_cost": "1"}),
]


async def test_each_bad_value_is_refused_and_named(desk: Desk) -> None:
    cat = await make_category(desk.client, desk.admin, name="Everything", fields=EVERY_TYPE)
    wrong = []
    for key, value in ONE_BAD_VALUE:
        r = await desk.client.post(
            TICKETS,
            json=desk.ticket_body(cat, custom_fields={**GOOD_VALUES, key: value}),
            headers=desk.requester.headers,
        )
        if r.status_code != 422 or error_keys(r.json()) != {key}:
            wrong.append((key, value, r.status_code, r.text))
    assert wrong == []
    assert await desk.listing() == []


async def test_required_fields_must_be_present(desk: Desk) -> None:
    r = await desk.client.post(
        TICKETS,
        json=desk.ticket_body(custom_fields={"serial_number": "ABCD"}),
        headers=desk.requester.headers,
    )
    assert error_keys(problem(r, 422, "invalid_custom_fields")) == {"asset_name", "issue_type"}
    r = await desk.client.post(
        TICKETS,
        json=desk.ticket_body(custom_fields=it_values(asset_name="   ", issue_type=None)),
        headers=desk.requester.headers,
    )
    assert error_keys(problem(r, 422, "invalid_custom_fields")) == {"asset_name", "issue_type"}
    r = await desk.client.post(
        TICKETS,
        json=desk.ticket_body(desk.budget, custom_fields=budget_values(cost_items=[])),
        headers=desk.requester.headers,
    )
    assert error_keys(problem(r, 422, "invalid_custom_fields")) == {"cost_items"}


async def test_budget_request_checks_money_and_items(desk: Desk) -> None:
    ticket = await desk.file(category=desk.budget)
    assert ticket["custom_fields"]["requested_budget"] == "2699.90"
    assert ticket["custom_fields"]["cost_items"][1] == {
        "description": "Docking station",
        "quantity": 1,
        "unit_cost": "199.90",
    }
    r = await desk.client.post(
        TICKETS,
        json=desk.ticket_body(
            desk.budget,
            custom_fields=budget_values(requested_budget="-0.01", performance_start="2019-12-31"),
        ),
        headers=desk.requester.headers,
    )
    assert error_keys(problem(r, 422)) == {"requested_budget", "performance_start"}


async def test_sub_category_fields_join_the_parent_fields(desk: Desk) -> None:
    ticket = await desk.file(
        category=desk.hardware, custom_fields=it_values(warranty=True, units=4)
    )
    assert ticket["custom_fields"]["warranty"] is True and ticket["custom_fields"]["units"] == 4
    r = await desk.client.post(
        TICKETS,
        json=desk.ticket_body(desk.hardware, custom_fields=it_values(units=0, issue_type="Pc")),
        headers=desk.requester.headers,
    )
    assert error_keys(problem(r, 422)) == {"units", "issue_type"}
    # The Hardware field is unknown on the parent alone.
    r = await desk.client.post(
        TICKETS,
        json=desk.ticket_body(custom_fields=it_values(warranty=True)),
        headers=desk.requester.headers,
    )
    assert error_keys(problem(r, 422)) == {"warranty"}
    # A sub-category must belong to the category it is filed under.
    r = await desk.client.post(
        TICKETS,
        json={**desk.ticket_body(desk.hardware), "category_id": desk.budget["id"]},
        headers=desk.requester.headers,
    )
    problem(r, 422, "invalid_subcategory")
    # A sub-category is not a top-level category.
    r = await desk.client.post(
        TICKETS,
        json={**desk.ticket_body(), "category_id": desk.hardware["id"]},
        headers=desk.requester.headers,
    )
    problem(r, 422, "invalid_category")


def _field(**overrides: Any) -> dict[str, Any]:
    return {"key": "thing", "label": "Thing", "type": "text", **overrides}


BAD_DEFINITIONS: list[list[dict[str, Any]]] = [
    [_field(type="select")],
    [_field(type="select", choices=[])],
    [_field(type="multi_select")],
    [_field(type="select", choices=["a", "a"])],
    [_field(type="text", choices=["a"])],
    [_field(), _field(label="Again")],
    [_field(type="number", min=5, max=1)],
    [_field(type="date", min_date="2027-01-01", max_date="2026-01-01")],
    [_field(key="Thing")],
    [_field(key="1thing")],
    [_field(key="thing-name")],
    [_field(key="")],
    [_field(key="t" * 41)],
    [_field(type="currency")],
    [_field(label="")],
    [_field(onclick="x")],
]


async def test_bad_definitions_are_refused(desk: Desk) -> None:
    wrong = []
    for fields in BAD_DEFINITIONS:
        r = await desk.client.post(
            CATEGORIES, json={"name": "Broken", "fields": fields}, headers=desk.admin.headers
        )
        if r.status_code != 422:
            wrong.append(("create", fields, r.status_code, r.text))
        r = await desk.client.patch(
            f"{CATEGORIES}/{desk.it['id']}", json={"fields": fields}, headers=desk.admin.headers
        )
        if r.status_code != 422:
            wrong.append(("update", fields, r.status_code, r.text))
    assert wrong == []
    r = await desk.client.get(f"{CATEGORIES}/{desk.it['id']}", headers=desk.admin.headers)
    assert r.json()["fields"] == desk.it["fields"]
    r = await desk.client.get(CATEGORIES, headers=desk.admin.headers)
    assert "Broken" not in {c["name"] for c in r.json()}


async def test_duplicate_keys_name_the_key(desk: Desk) -> None:
    r = await desk.client.post(
        CATEGORIES,
        json={"name": "Broken", "fields": [_field(), _field(label="Again")]},
        headers=desk.admin.headers,
    )
    assert error_keys(problem(r, 422, "duplicate_field_key")) == {"thing"}


async def test_changing_definitions_leaves_existing_tickets_alone(desk: Desk) -> None:
    ticket = await desk.file(
        custom_fields={"asset_name": "PC-7", "issue_type": "Other", "other_issue": "Fan noise"}
    )
    stored = ticket["custom_fields"]
    # Make the serial number required, drop the "Other" choice and the other_issue field.
    new_fields = [
        {**f, "required": True} if f["key"] == "serial_number" else f
        for f in desk.it["fields"]
        if f["key"] != "other_issue"
    ]
    for f in new_fields:
        if f["key"] == "issue_type":
            f["choices"] = ["Hardware", "Software"]
    r = await desk.client.patch(
        f"{CATEGORIES}/{desk.it['id']}", json={"fields": new_fields}, headers=desk.admin.headers
    )
    assert r.status_code == 200, r.text
    # The old ticket stays readable, unchanged, for everyone who could read it.
    for who in (desk.requester, desk.agent, desk.admin):
        assert (await desk.get(ticket, who))["custom_fields"] == stored
    listed = await desk.listing(category_id=desk.it["id"])
    assert [t["id"] for t in listed] == [ticket["id"]]
    # Its other properties can still change without revalidating the stored values.
    r = await desk.patch(ticket, priority="low", subject="Fan noise in the office")
    assert r.status_code == 200, r.text
    assert r.json()["custom_fields"] == stored
    # A partial change of one field validates only that field, keeping the rest.
    r = await desk.patch(ticket, custom_fields={"asset_name": "PC-8", "serial_number": "SN-1234"})
    assert r.status_code == 200, r.text
    assert r.json()["custom_fields"] == {**stored, "asset_name": "PC-8", "serial_number": "SN-1234"}
    # New tickets follow the new definition.
    r = await desk.client.post(
        TICKETS,
        json=desk.ticket_body(custom_fields={"asset_name": "PC-9", "issue_type": "Other"}),
        headers=desk.requester.headers,
    )
    assert error_keys(problem(r, 422)) == {"issue_type", "serial_number"}


async def test_inactive_categories_take_no_new_tickets(desk: Desk) -> None:
    ticket = await desk.file(category=desk.budget)
    r = await desk.client.patch(
        f"{CATEGORIES}/{desk.budget['id']}", json={"is_active": False}, headers=desk.admin.headers
    )
    assert r.status_code == 200 and r.json()["is_active"] is False
    r = await desk.client.post(
        TICKETS, json=desk.ticket_body(desk.budget), headers=desk.requester.headers
    )
    assert error_keys(problem(r, 422, "invalid_category")) == {"category_id"}
    r = await desk.client.get(CATEGORIES, headers=desk.requester.headers)
    assert desk.budget["id"] not in {c["id"] for c in r.json()}
    r = await desk.client.get(
        CATEGORIES, params={"include_inactive": True}, headers=desk.admin.headers
    )
    assert desk.budget["id"] in {c["id"] for c in r.json()}
    assert (await desk.get(ticket))["custom_fields"] == ticket["custom_fields"]


@pytest.mark.parametrize("role", ["requester", "agent", "manager"])
async def test_only_admins_create_or_change_categories(desk: Desk, role: str) -> None:
    who: Session = getattr(desk, role)
    r = await desk.client.post(CATEGORIES, json={"name": "Facilities"}, headers=who.headers)
    problem(r, 403)
    r = await desk.client.patch(
        f"{CATEGORIES}/{desk.it['id']}", json={"name": "Hacked"}, headers=who.headers
    )
    problem(r, 403)
    r = await desk.client.get(f"{CATEGORIES}/{desk.it['id']}", headers=desk.admin.headers)
    assert r.json()["name"] == "IT Support"
    r = await desk.client.get(CATEGORIES, headers=desk.admin.headers)
    assert "Facilities" not in {c["name"] for c in r.json()}


async def test_category_changes_are_audited(desk: Desk) -> None:
    r = await desk.client.patch(
        f"{CATEGORIES}/{desk.budget['id']}",
        json={"default_priority": "high"},
        headers=desk.admin.headers,
    )
    assert r.status_code == 200
    r = await desk.client.get(
        API_AUDIT, params={"record_id": desk.budget["id"]}, headers=desk.admin.headers
    )
    assert r.status_code == 200, r.text
    entries = r.json()["items"]
    actions = {e["action"]: e for e in entries}
    assert {"category.created", "category.updated"} <= set(actions)
    updated = actions["category.updated"]
    assert updated["old_values"] == {"default_priority": "low"}
    assert updated["new_values"] == {"default_priority": "high"}
    assert updated["actor_id"] == str(desk.admin.user.id)
