"""Bulk ticket changes and the CSV import, through HTTP.

Too many rows in an import answers 413 (like a file over 20 MB): both are "this upload is too
big; split it", not a problem with one row.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from servicedesk.core.runtime import Runtime
from servicedesk.models import AuditLog, Organization, Role, Ticket, TicketCounter, User
from tests.conftest import Session

MakeUser = Callable[..., Awaitable[User]]
Login = Callable[..., Awaitable[Session]]

FIELDS = [
    {"key": "asset", "label": "Asset", "type": "text", "required": True},
    {"key": "units", "label": "Units", "type": "number", "min": 0},
    {"key": "urgent", "label": "Urgent", "type": "boolean"},
    {
        "key": "modules",
        "label": "Modules",
        "type": "multi_select",
        "choices": ["hr", "finance", "it"],
    },
    {"key": "budget", "label": "Budget", "type": "money"},
    {"key": "due", "label": "Due", "type": "date"},
    {"key": "cost", "label": "Cost", "type": "cost_items"},
]


async def _category(
    client: httpx.AsyncClient, admin: Session, name: str = "Hardware", **extra: Any
) -> dict[str, Any]:
    r = await client.post(
        "/api/v1/categories",
        json={"name": name, "default_priority": "medium", "fields": FIELDS, **extra},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def _tickets(
    client: httpx.AsyncClient, who: Session, category_id: str, n: int, **extra: Any
) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        r = await client.post(
            "/api/v1/tickets",
            json={
                "subject": f"Printer jam number {i}",
                "description": "The printer on floor 3 jams on every page.",
                "category_id": category_id,
                "custom_fields": {"asset": f"PRN-{i}"},
                "tags": ["old", "printer"],
                **extra,
            },
            headers=who.headers,
        )
        assert r.status_code == 201, r.text
        out.append(r.json())
    return out


async def _versions(client: httpx.AsyncClient, who: Session, ids: list[str]) -> list[int]:
    versions = []
    for ticket_id in ids:
        r = await client.get(f"/api/v1/tickets/{ticket_id}", headers=who.headers)
        assert r.status_code == 200, r.text
        versions.append(r.json()["version"])
    return versions


async def _bulk(client: httpx.AsyncClient, who: Session, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/api/v1/tickets/bulk", json=body, headers=who.headers)


# Bulk update -----------------------------------------------------------------------------


async def test_bulk_assign_status_priority_tags(
    client: httpx.AsyncClient, admin: Session, org: Organization, make_user: MakeUser, login: Login
) -> None:
    cat = await _category(client, admin)
    agent = await login(await make_user(org, Role.AGENT), org)
    tickets = await _tickets(client, admin, cat["id"], 4)
    ids = [t["id"] for t in tickets]
    action = {
        "assignee_id": str(agent.user.id),
        "status": "in_progress",
        "priority": "critical",
        "add_tags": ["VIP", "escalated"],
        "remove_tags": ["old"],
    }
    r = await _bulk(client, agent, {"ticket_ids": ids, "action": action})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 4 and body["changed"] == 4
    assert [i["id"] for i in body["items"]] == ids
    for item in body["items"]:
        assert item["assignee_id"] == str(agent.user.id)
        assert item["status"] == "in_progress" and item["priority"] == "critical"
        assert item["tags"] == ["printer", "vip", "escalated"]
        assert item["version"] == 2
    assert await _versions(client, agent, ids) == [2, 2, 2, 2]

    r = await client.get(f"/api/v1/tickets/{ids[0]}/history", headers=agent.headers)
    bulk_entries = [e for e in r.json() if e["action"] == "ticket.bulk_updated"]
    assert len(bulk_entries) == 1
    entry = bulk_entries[0]
    assert entry["actor_id"] == str(agent.user.id)
    assert entry["old_values"]["status"] == "new" and entry["new_values"]["status"] == "in_progress"
    assert entry["old_values"]["assignee_id"] is None
    assert entry["new_values"]["priority"] == "critical"

    # A retry finds everything done already: nothing changes, no new version or audit entry.
    r = await _bulk(client, agent, {"ticket_ids": ids, "action": action})
    assert r.status_code == 200 and r.json()["changed"] == 0, r.text
    assert await _versions(client, agent, ids) == [2, 2, 2, 2]

    # null unassigns; the status can be resolved and, with a reason, others rejected.
    r = await _bulk(client, agent, {"ticket_ids": ids[:2], "action": {"assignee_id": None}})
    assert r.status_code == 200, r.text
    assert [i["assignee_id"] for i in r.json()["items"]] == [None, None]
    r = await _bulk(
        client,
        admin,
        {"ticket_ids": ids[2:], "action": {"status": "rejected", "reason": "Duplicate of 1"}},
    )
    assert r.status_code == 200, r.text
    r = await client.get(f"/api/v1/tickets/{ids[3]}", headers=admin.headers)
    assert r.json()["status"] == "rejected" and r.json()["rejection_reason"] == "Duplicate of 1"
    assert r.json()["closed_at"] is not None

    r = await client.get(
        "/api/v1/audit-log", params={"action": "ticket.bulk_updated"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == 4 + 2 + 2


async def test_bulk_rejects_bad_requests(
    client: httpx.AsyncClient, admin: Session, org: Organization, make_user: MakeUser
) -> None:
    cat = await _category(client, admin)
    ids = [t["id"] for t in await _tickets(client, admin, cat["id"], 2)]

    too_many = [str(uuid.uuid4()) for _ in range(501)]
    r = await _bulk(client, admin, {"ticket_ids": too_many, "action": {"priority": "low"}})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await _bulk(client, admin, {"ticket_ids": [], "action": {"priority": "low"}})
    assert r.status_code == 422, r.text
    r = await _bulk(client, admin, {"ticket_ids": [ids[0], ids[0]], "action": {"priority": "low"}})
    assert r.status_code == 422 and "unique" in r.text, r.text
    r = await _bulk(client, admin, {"ticket_ids": ids, "action": {}})
    assert r.status_code == 422, r.text
    # Forged fields: anything but the documented action keys is refused, not ignored.
    for forged in (
        {"ticket_ids": ids, "action": {"priority": "low", "organization_id": str(uuid.uuid4())}},
        {"ticket_ids": ids, "action": {"priority": "low", "version": 1}},
        {"ticket_ids": ids, "action": {"subject": "Changed subject"}},
        {"ticket_ids": ids, "action": {"priority": "low"}, "organization_id": str(org.id)},
        {"ticket_ids": ids, "action": {"priority": "urgent"}},
        {"ticket_ids": ids, "action": {"add_tags": ["<script>"]}},
        {"ticket_ids": ids, "action": {"add_tags": ["a"], "remove_tags": ["a"]}},
        {"ticket_ids": ids, "action": {"priority": "low", "reason": "no status"}},
    ):
        r = await _bulk(client, admin, forged)
        assert r.status_code == 422, (forged, r.text)
    r = await _bulk(client, admin, {"ticket_ids": ids, "action": {"status": "rejected"}})
    assert r.status_code == 422 and r.json()["code"] == "reason_required", r.text
    requester = await make_user(org, Role.REQUESTER)
    r = await _bulk(
        client, admin, {"ticket_ids": ids, "action": {"assignee_id": str(requester.id)}}
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_assignee", r.text
    assert r.json()["errors"][0]["loc"] == ["body", "action", "assignee_id"]
    assert await _versions(client, admin, ids) == [1, 1]


async def test_bulk_unknown_or_foreign_ids_are_404_and_change_nothing(
    client: httpx.AsyncClient,
    admin: Session,
    org: Organization,
    other_org: Organization,
    make_user: MakeUser,
    login: Login,
) -> None:
    cat = await _category(client, admin)
    ids = [t["id"] for t in await _tickets(client, admin, cat["id"], 3)]
    other_admin = await login(await make_user(other_org, Role.ADMIN), other_org)
    other_cat = await _category(client, other_admin)
    foreign = (await _tickets(client, other_admin, other_cat["id"], 1))[0]
    unknown = str(uuid.uuid4())

    r = await _bulk(
        client, admin, {"ticket_ids": [*ids, foreign["id"]], "action": {"priority": "high"}}
    )
    assert r.status_code == 404, r.text
    problem = r.json()
    assert problem["not_found"] == [foreign["id"]]
    assert problem["detail"].startswith("1 ticket not found")
    assert foreign["number"] not in r.text and "Other" not in r.text
    r = await _bulk(
        client, admin, {"ticket_ids": [unknown, *ids, foreign["id"]], "action": {"status": "open"}}
    )
    assert r.status_code == 404 and r.json()["not_found"] == [unknown, foreign["id"]], r.text
    assert r.json()["detail"].startswith("2 tickets not found")
    assert await _versions(client, admin, ids) == [1, 1, 1]
    r = await client.get(f"/api/v1/tickets/{foreign['id']}", headers=other_admin.headers)
    assert r.json()["version"] == 1 and r.json()["priority"] == "medium"

    # An agent restricted to their department does not see the others' tickets either.
    r = await client.post("/api/v1/departments", json={"name": "Facilities"}, headers=admin.headers)
    assert r.status_code == 201, r.text
    dept = r.json()["id"]
    r = await client.patch(
        "/api/v1/organization",
        json={"settings": {"agents_restricted_to_departments": True}},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    agent = await login(await make_user(org, Role.AGENT, department_id=uuid.UUID(dept)), org)
    own = (await _tickets(client, admin, cat["id"], 1, department_id=dept))[0]
    r = await _bulk(
        client, agent, {"ticket_ids": [own["id"], ids[0]], "action": {"priority": "low"}}
    )
    assert r.status_code == 404 and r.json()["not_found"] == [ids[0]], r.text
    r = await _bulk(client, agent, {"ticket_ids": [own["id"]], "action": {"priority": "low"}})
    assert r.status_code == 200, r.text


async def test_bulk_illegal_transition_is_422_per_ticket_and_changes_nothing(
    client: httpx.AsyncClient, admin: Session, org: Organization, make_user: MakeUser, login: Login
) -> None:
    cat = await _category(client, admin)
    tickets = await _tickets(client, admin, cat["id"], 5)
    ids = [t["id"] for t in tickets]
    closed = tickets[1]
    r = await client.post(
        f"/api/v1/tickets/{closed['id']}/status",
        json={"status": "closed", "version": 1},
        headers=admin.headers,
    )
    assert r.status_code == 200, r.text
    before = await _versions(client, admin, ids)
    agent = await login(await make_user(org, Role.AGENT), org)
    r = await _bulk(
        client,
        agent,
        {"ticket_ids": ids, "action": {"status": "in_progress", "assignee_id": str(agent.user.id)}},
    )
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "bulk_update_invalid"
    assert problem["tickets"] == [
        {
            "ticket_id": closed["id"],
            "number": closed["number"],
            "error": "a closed ticket cannot move to in_progress; allowed: none",
        }
    ]
    assert await _versions(client, admin, ids) == before
    r = await client.get(f"/api/v1/tickets/{ids[0]}", headers=admin.headers)
    assert r.json()["assignee_id"] is None and r.json()["status"] == "new"

    # Too many tags on one ticket is also a per-ticket error.
    many = [f"t{i}" for i in range(19)]
    r = await _bulk(client, admin, {"ticket_ids": ids, "action": {"add_tags": many}})
    assert r.status_code == 422 and len(r.json()["tickets"]) == 5, r.text
    assert "would have 21 tags" in r.json()["tickets"][0]["error"]


async def test_bulk_is_for_agents_and_admins(
    client: httpx.AsyncClient, admin: Session, org: Organization, make_user: MakeUser, login: Login
) -> None:
    cat = await _category(client, admin)
    requester = await login(await make_user(org, Role.REQUESTER), org)
    own = await _tickets(client, requester, cat["id"], 1)
    manager = await login(await make_user(org, Role.MANAGER), org)
    for who in (manager, requester):
        r = await _bulk(client, who, {"ticket_ids": [own[0]["id"]], "action": {"priority": "low"}})
        assert r.status_code == 403, r.text
    r = await client.post("/api/v1/tickets/bulk", json={"ticket_ids": [], "action": {}})
    assert r.status_code in (401, 404), r.text


# CSV import ------------------------------------------------------------------------------

HEADER = [
    "subject",
    "description",
    "category",
    "subcategory",
    "priority",
    "status",
    "requester_email",
    "assignee_email",
    "department",
    "tags",
    "submitted_at",
    "resolved_at",
    "closed_at",
    "channel",
    "field:asset",
    "field:units",
    "field:urgent",
    "field:modules",
    "field:budget",
    "field:due",
    "field:cost",
]


def _csv(rows: list[dict[str, str]], header: list[str] = HEADER, *, bom: bool = False) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in header})
    data = out.getvalue().encode()
    return (b"\xef\xbb\xbf" + data) if bom else data


def _row(n: int, requester: str, **extra: str) -> dict[str, str]:
    return {
        "subject": f"Migrated issue {n:05d}",
        "description": f"Imported from the old desk. Reference legacy-{n:05d}, see notes.",
        "category": "Hardware",
        "requester_email": requester,
        "field:asset": f"LT-{n}",
        **extra,
    }


async def _import(
    client: httpx.AsyncClient,
    who: Session,
    data: bytes,
    *,
    dry_run: bool = False,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        "/api/v1/tickets/import",
        params={"dry_run": "true"} if dry_run else None,
        files={"file": ("tickets.csv", data, "text/csv")},
        headers={**who.headers, **(headers or {})},
    )


async def _stored(runtime: Runtime, org: Organization) -> list[Ticket]:
    async with runtime.db.tenant_session(org.id) as session:
        query = select(Ticket).order_by(Ticket.number)
        return list((await session.execute(query)).scalars())


async def _ticket_count(runtime: Runtime, org: Organization) -> int:
    async with runtime.db.tenant_session(org.id) as session:
        return int((await session.execute(select(func.count()).select_from(Ticket))).scalar_one())


@pytest.fixture
async def people(
    org: Organization, make_user: MakeUser, client: httpx.AsyncClient, admin: Session
) -> dict[str, Any]:
    cat = await _category(client, admin)
    r = await client.post(
        "/api/v1/categories",
        json={"name": "Laptops", "parent_id": cat["id"], "default_priority": "high"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/departments", json={"name": "IT Ops"}, headers=admin.headers)
    assert r.status_code == 201, r.text
    return {
        "category": cat,
        "department": r.json(),
        "requester": await make_user(org, Role.REQUESTER, email="pat.requester@example.com"),
        "agent": await make_user(org, Role.AGENT, email="alex.agent@example.com"),
    }


async def test_import_1000_rows(
    client: httpx.AsyncClient,
    admin: Session,
    org: Organization,
    people: dict[str, Any],
    runtime: Runtime,
) -> None:
    rows = []
    for n in range(1000):
        extra: dict[str, str] = {
            "tags": "legacy;hw|import",
            "field:units": str(n % 7),
            "field:urgent": "yes" if n % 2 else "no",
            "field:modules": "hr; it",
        }
        if n < 600:
            extra["submitted_at"] = f"2025-03-{n % 28 + 1:02d}T08:30:00Z"
        if n % 10 == 0:
            extra.update(
                subcategory="laptops",
                assignee_email="ALEX.agent@example.com",
                department="it ops",
                status="in_progress",
                priority="critical",
                channel="email",
            )
        if n % 10 == 1 and n < 600:
            extra.update(
                status="closed",
                resolved_at="2025-04-01T10:00:00+02:00",
                closed_at="2025-04-02",
            )
        if n == 5:
            extra.update(
                subject="Keyboard spills aubergine",
                **{
                    "field:budget": "1250.5",
                    "field:due": "2026-12-31",
                    "field:cost": json.dumps(
                        [{"description": "Keyboard", "quantity": 2, "unit_cost": "19.99"}]
                    ),
                },
            )
        rows.append(_row(n, "Pat.Requester@example.com", **extra))
    data = _csv(rows, bom=True)

    started = time.perf_counter()
    r = await _import(client, admin, data)
    elapsed = time.perf_counter() - started
    print(f"\nimport of 1,000 rows ({len(data) / 1024:.0f} KiB) took {elapsed:.3f} s")
    assert r.status_code == 201, r.text[:2000]
    body = r.json()
    this_year = body["ranges"][-1]["year"]
    assert body["count"] == 1000 and body["dry_run"] is False
    assert body["ranges"] == [
        {
            "year": 2025,
            "count": 600,
            "first_number": "TKT2025000001",
            "last_number": "TKT2025000600",
        },
        {
            "year": this_year,
            "count": 400,
            "first_number": f"TKT{this_year}000001",
            "last_number": f"TKT{this_year}000400",
        },
    ]
    assert body["first_number"] == "TKT2025000001"
    assert body["last_number"] == f"TKT{this_year}000400"

    stored = await _stored(runtime, org)
    assert len(stored) == 1000
    assert [t.number for t in stored] == [f"TKT2025{i:06d}" for i in range(1, 601)] + [
        f"TKT{this_year}{i:06d}" for i in range(1, 401)
    ]
    by_subject = {t.subject: t for t in stored}
    t0 = by_subject["Migrated issue 00000"]
    assert t0.subcategory_id is not None and str(t0.assignee_id) == str(people["agent"].id)
    assert str(t0.department_id) == people["department"]["id"]
    assert (t0.status, t0.priority, t0.channel) == ("in_progress", "critical", "email")
    assert t0.custom_fields == {
        "asset": "LT-0",
        "units": 0,
        "urgent": False,
        "modules": ["hr", "it"],
    }
    assert t0.tags == ["legacy", "hw", "import"] and t0.version == 1
    t1 = by_subject["Migrated issue 00001"]
    assert t1.status == "closed" and t1.resolved_at is not None and t1.closed_at is not None
    assert t1.resolved_at.isoformat() == "2025-04-01T08:00:00+00:00"
    assert t1.submitted_at.isoformat() == "2025-03-02T08:30:00+00:00"
    assert t1.updated_at == t1.closed_at
    t5 = by_subject["Keyboard spills aubergine"]
    assert t5.custom_fields == {
        "asset": "LT-5",
        "units": 5,
        "urgent": True,
        "modules": ["hr", "it"],
        "budget": "1250.50",
        "due": "2026-12-31",
        "cost": [{"description": "Keyboard", "quantity": 2, "unit_cost": "19.99"}],
    }
    assert t5.priority == "medium" and t5.channel == "api" and t5.status == "new"
    assert "<p>" in t5.description_html

    r = await client.get("/api/v1/tickets", params={"q": "aubergine"}, headers=admin.headers)
    assert r.status_code == 200, r.text
    assert [i["number"] for i in r.json()["items"]] == [t5.number]
    r = await client.get(f"/api/v1/tickets/by-number/{t5.number}", headers=admin.headers)
    assert r.status_code == 200 and r.json()["custom_fields"]["cost"][0]["unit_cost"] == "19.99"

    r = await client.get(
        "/api/v1/audit-log", params={"action": "ticket.imported"}, headers=admin.headers
    )
    entries = r.json()["items"]
    assert len(entries) == 1 and entries[0]["record_id"] is None
    assert entries[0]["new_values"]["count"] == 1000
    assert entries[0]["new_values"]["first_number"] == "TKT2025000001"
    r = await client.get("/api/v1/audit-log", params={"action": "ticket."}, headers=admin.headers)
    assert {e["action"] for e in r.json()["items"]} == {"ticket.imported"}

    # The counter continues after the imported block: the next ticket is gap-free.
    r = await client.post(
        "/api/v1/tickets",
        json={
            "subject": "After the import",
            "description": "A ticket filed after the migration.",
            "category_id": people["category"]["id"],
            "custom_fields": {"asset": "X"},
        },
        headers=admin.headers,
    )
    assert r.status_code == 201 and r.json()["number"] == f"TKT{this_year}000401", r.text


async def test_import_dry_run_writes_nothing(
    client: httpx.AsyncClient,
    admin: Session,
    org: Organization,
    people: dict[str, Any],
    runtime: Runtime,
) -> None:
    rows = [_row(n, "pat.requester@example.com", submitted_at="2024-05-05") for n in range(3)]
    r = await _import(client, admin, _csv(rows), dry_run=True)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "dry_run": True,
        "count": 3,
        "first_number": None,
        "last_number": None,
        "ranges": [{"year": 2024, "count": 3, "first_number": None, "last_number": None}],
    }
    assert await _ticket_count(runtime, org) == 0
    async with runtime.db.tenant_session(org.id) as session:
        counters = (await session.execute(select(TicketCounter))).scalars().all()
        imported = (
            await session.execute(select(AuditLog).where(AuditLog.action == "ticket.imported"))
        ).all()
    assert counters == [] and imported == []
    r = await _import(client, admin, _csv(rows))
    assert r.status_code == 201 and r.json()["first_number"] == "TKT2024000001", r.text


async def test_import_bad_rows_are_all_reported_and_nothing_is_written(
    client: httpx.AsyncClient,
    admin: Session,
    org: Organization,
    people: dict[str, Any],
    runtime: Runtime,
) -> None:
    req = "pat.requester@example.com"
    rows = [
        _row(1, req),
        _row(2, req, category="Nonexistent"),
        _row(3, req, priority="urgent"),
        _row(4, "nobody@example.com"),
        _row(5, req, subject="Hi"),
        _row(6, req, **{"field:units": "many", "field:modules": "hr;payroll"}),
        _row(7, req, submitted_at="yesterday"),
        _row(8, req, assignee_email="pat.requester@example.com", status="closed"),
        _row(9, req, **{"field:asset": ""}),
        _row(10, req, status="open", resolved_at="2025-01-01"),
        _row(11, req, submitted_at="2025-02-01", resolved_at="2025-01-01", status="resolved"),
        _row(12, req, status="rejected"),
        _row(13, req, **{"field:cost": "[{not json"}),
        _row(14, req),
        _row(15, req, description="  \x01\x02  tiny    "),
    ]
    for dry_run in (True, False):
        r = await _import(client, admin, _csv(rows), dry_run=dry_run)
        assert r.status_code == 422, r.text
        problem = r.json()
        assert problem["code"] == "import_invalid"
        assert problem["detail"].startswith("13 rows of 15 have errors")
        report = {
            e["row"]: {(x["column"], x["message"]) for x in e["errors"]} for e in problem["rows"]
        }
        assert sorted(report) == [*range(2, 14), 15]
        assert report[2] == {("category", "no active category named 'Nonexistent'")}
        assert report[3] == {("priority", "must be one of low, medium, high, critical")}
        assert report[4] == {
            ("requester_email", "no active user 'nobody@example.com' in this organization")
        }
        assert report[5] == {("subject", "must have at least 5 characters")}
        assert report[6] == {
            ("field:units", "must be a number"),
            ("field:modules", "has unknown choices: payroll"),
        }
        assert {c for c, _ in report[7]} == {"submitted_at"}
        assert {c for c, _ in report[8]} == {"assignee_email"}
        assert report[9] == {("field:asset", "is required")}
        assert report[10] == {("resolved_at", "must be empty for a open ticket")}
        assert report[11] == {("resolved_at", "is before submitted_at")}
        assert report[12] == {("rejection_reason", "is required for a rejected ticket")}
        assert {c for c, _ in report[13]} == {"field:cost"}
        assert report[15] == {("description", "must have at least 10 visible characters")}
        assert [e["line"] for e in problem["rows"]][:2] == [3, 4]
    assert await _ticket_count(runtime, org) == 0

    # A rejected ticket with its reason is fine.
    ok = [_row(1, req, status="rejected", rejection_reason="Out of scope")]
    r = await _import(client, admin, _csv([*ok], [*HEADER, "rejection_reason"]))
    assert r.status_code == 201, r.text


async def test_import_stores_hostile_cells_harmlessly(
    client: httpx.AsyncClient,
    admin: Session,
    org: Organization,
    people: dict[str, Any],
    runtime: Runtime,
) -> None:
    rows = [
        _row(
            1,
            "pat.requester@example.com",
            subject='=HYPERLINK("http://evil.example/x","click") <b>hi</b>',
            description=(
                "<script>alert(1)</script> <img src=x onerror=alert(2)> "
                "[link](javascript:alert(3)) **bold**"
            ),
            tags="=cmd|+sum",
            **{"field:asset": "@SUM(1+1)\x07"},
        ),
        _row(2, "pat.requester@example.com", subject="-2+3 formula\x1b subject"),
    ]
    r = await _import(client, admin, _csv(rows))
    assert r.status_code == 201, r.text
    first, second = await _stored(runtime, org)
    assert first.subject == '=HYPERLINK("http://evil.example/x","click") <b>hi</b>'
    html = first.description_html
    assert "<script" not in html and "<img" not in html and "href=" not in html
    assert "&lt;script&gt;" in html and "<strong>bold</strong>" in html
    assert first.tags == ["=cmd", "+sum"]
    assert first.custom_fields["asset"] == "@SUM(1+1)"
    assert second.subject == "-2+3 formula subject"
    r = await client.get(f"/api/v1/tickets/{first.id}", headers=admin.headers)
    assert r.json()["subject"].startswith("=HYPERLINK")


async def test_import_refuses_bad_files(
    client: httpx.AsyncClient, admin: Session, org: Organization, people: dict[str, Any]
) -> None:
    req = "pat.requester@example.com"
    cases = {
        "undecodable": b"subject,description\n\xff\xfe\xfa broken",
        "latin-1": _csv([_row(1, req)]).replace(b"Migrated", "Migr\xe9".encode("latin-1")),
        "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "empty": b"",
        "header only": _csv([]),
        "semicolons": b"subject;description;category;requester_email\nA;B;C;D\n",
        "forged columns": _csv([_row(1, req)], [*HEADER, "organization_id", "number"]),
        "missing column": _csv([_row(1, req)], [h for h in HEADER if h != "requester_email"]),
        "unterminated quote": b'subject,description,category,requester_email\n"abc,d,e,f\n',
    }
    for name, data in cases.items():
        r = await _import(client, admin, data)
        assert r.status_code == 422, (name, r.text)
        assert r.json()["code"] == "invalid_csv", (name, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = await _import(client, admin, cases["undecodable"])
    assert "not UTF-8" in r.json()["detail"]
    r = await _import(client, admin, cases["forged columns"])
    assert "'organization_id'" in r.json()["detail"] and "'number'" in r.json()["detail"]

    r = await client.post("/api/v1/tickets/import", content=b"a,b", headers=admin.headers)
    assert r.status_code == 422 and r.json()["code"] == "file_required", r.text

    # A row with more or fewer cells than the header is an error of that row.
    data = _csv([_row(1, req)]) + b"one,two\r\n"
    r = await _import(client, admin, data)
    assert r.status_code == 422 and r.json()["rows"][0]["row"] == 2, r.text


async def test_import_limits(
    client: httpx.AsyncClient, admin: Session, org: Organization, people: dict[str, Any]
) -> None:
    header = "subject,description,category,requester_email\r\n"
    line = "Printer jam,Paper everywhere again,Hardware,pat.requester@example.com\r\n"
    data = (header + line * 10_001).encode()
    r = await _import(client, admin, data, dry_run=True)
    assert r.status_code == 413 and r.json()["code"] == "import_too_many_rows", r.text
    big = (header + "x" * (20 * 1024 * 1024)).encode()
    r = await _import(client, admin, big)
    assert r.status_code == 413 and r.json()["code"] == "import_too_large", r.text


async def test_import_is_for_admins(
    client: httpx.AsyncClient,
    admin: Session,
    org: Organization,
    people: dict[str, Any],
    make_user: MakeUser,
    login: Login,
) -> None:
    data = _csv([_row(1, "pat.requester@example.com")])
    for role in (Role.AGENT, Role.MANAGER, Role.REQUESTER):
        who = await login(await make_user(org, role), org)
        r = await _import(client, who, data)
        assert r.status_code == 403, (role, r.text)


async def test_import_idempotency_key_replays(
    client: httpx.AsyncClient,
    admin: Session,
    org: Organization,
    people: dict[str, Any],
    runtime: Runtime,
) -> None:
    data = _csv([_row(n, "pat.requester@example.com") for n in range(2)])
    key = {"Idempotency-Key": "migration-batch-1"}
    first = await _import(client, admin, data, headers=key)
    assert first.status_code == 201, first.text
    again = await _import(client, admin, data, headers=key)
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert await _ticket_count(runtime, org) == 2
    other = await _import(client, admin, _csv([_row(9, "pat.requester@example.com")]), headers=key)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


async def test_import_holds_no_connection_while_it_receives_the_file(
    client: httpx.AsyncClient,
    admin: Session,
    org: Organization,
    people: dict[str, Any],
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Even when the sign-in check had to read the database (user cache empty), the upload is
    received with no connection taken from the pool; the import then works as usual."""
    from servicedesk.accounts.user_cache import user_cache
    from servicedesk.tickets import bulk_api

    pool = runtime.db.engine.sync_engine.pool
    held: list[int] = []
    real = bulk_api._read_upload

    async def reading(request: Any) -> bytes:
        held.append(pool.checkedout())  # type: ignore[attr-defined]
        return await real(request)

    monkeypatch.setattr(bulk_api, "_read_upload", reading)
    user_cache.clear()
    rows = [_row(n, "pat.requester@example.com") for n in range(2)]
    r = await _import(client, admin, _csv(rows))
    assert r.status_code == 201, r.text
    assert held == [0]
    assert await _ticket_count(runtime, org) == 2
