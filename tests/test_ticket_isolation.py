"""Isolation of the ticket core: an admin of organization A using organization B's ids gets
404 (never 403) on every route that takes an id or number, and B's rows stay as they were;
a requester using another requester's ticket gets 404 everywhere; department-restricted
agents see only their department's and their own tickets."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from servicedesk.models import Role
from tests.conftest import client_for
from tests.ticket_helpers import (
    API,
    TICKETS,
    VIEWS,
    Desk,
    Login,
    MakeUser,
    desk_fixture,  # noqa: F401
    new_desk,
    problem,
)


@dataclass
class World:
    client: httpx.AsyncClient
    a: Desk
    b: Desk
    ids: dict[str, str]
    """Placeholders of the routes: B's rows, and A's own ticket and comment."""


B_TABLES = ("tickets", "comments", "comment_revisions", "categories", "saved_views")


@pytest.fixture(scope="module")
async def world(app: object, runtime: Any) -> AsyncIterator[World]:
    async with client_for(app) as client:
        a = await new_desk(app, runtime, client, "Alpha")
        b = await new_desk(app, runtime, client, "Bravo")
        # B has more tickets than A, so B's last number does not exist in A.
        b_tickets = [await b.file() for _ in range(3)]
        b_ticket = b_tickets[-1]
        b_comment = await b.comment(b_ticket, "Bravo's reply, edited soon.")
        r = await client.patch(
            f"{TICKETS}/{b_ticket['id']}/comments/{b_comment['id']}",
            json={"body": "Bravo's reply, edited."},
            headers=b.agent.headers,
        )
        assert r.status_code == 200
        await b.comment(b_ticket, "Bravo's internal note.", internal=True)
        r = await client.post(VIEWS, json={"name": "Bravo view"}, headers=b.admin.headers)
        assert r.status_code == 201
        b_view = r.json()
        a_ticket = await a.file()
        a_comment = await a.comment(a_ticket, "Alpha's reply.", a.admin)
        yield World(
            client=client,
            a=a,
            b=b,
            ids={
                "ticket": b_ticket["id"],
                "number": b_ticket["number"],
                "comment": b_comment["id"],
                "category": b.it["id"],
                "view": b_view["id"],
                "own_ticket": a_ticket["id"],
                "own_comment": a_comment["id"],
            },
        )


async def snapshot(desk: Desk) -> dict[str, list[dict[str, Any]]]:
    """Every ticket-core row of the desk's organization, read in a system session."""
    out: dict[str, list[dict[str, Any]]] = {}
    async with desk.runtime.db.session() as session:
        for table in B_TABLES:
            result = await session.execute(
                text(f"SELECT * FROM {table} WHERE organization_id = :org ORDER BY id"),  # noqa: S608
                {"org": desk.org.id},
            )
            out[table] = [dict(row) for row in result.mappings()]
    return out


# (method, path template, body): every ticket-core route that takes an id or a number.
ROUTES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "get-ticket": ("GET", "/tickets/{ticket}", None),
    "patch-ticket": ("PATCH", "/tickets/{ticket}", {"priority": "low", "version": 1}),
    "get-by-number": ("GET", "/tickets/by-number/{number}", None),
    "change-status": ("POST", "/tickets/{ticket}/status", {"status": "open", "version": 1}),
    "history": ("GET", "/tickets/{ticket}/history", None),
    "list-comments": ("GET", "/tickets/{ticket}/comments", None),
    "add-comment": ("POST", "/tickets/{ticket}/comments", {"body": "Injected reply"}),
    "add-note": ("POST", "/tickets/{ticket}/comments", {"body": "x", "is_internal": True}),
    "edit-comment": ("PATCH", "/tickets/{ticket}/comments/{comment}", {"body": "Injected"}),
    "delete-comment": ("DELETE", "/tickets/{ticket}/comments/{comment}", None),
    "revisions": ("GET", "/tickets/{ticket}/comments/{comment}/revisions", None),
    "edit-comment-via-own-ticket": (
        "PATCH",
        "/tickets/{own_ticket}/comments/{comment}",
        {"body": "Injected"},
    ),
    "delete-comment-via-own-ticket": ("DELETE", "/tickets/{own_ticket}/comments/{comment}", None),
    "revisions-via-own-ticket": ("GET", "/tickets/{own_ticket}/comments/{comment}/revisions", None),
    "get-category": ("GET", "/categories/{category}", None),
    "patch-category": ("PATCH", "/categories/{category}", {"name": "Hijacked"}),
    "patch-view": ("PATCH", "/views/{view}", {"name": "Hijacked"}),
    "delete-view": ("DELETE", "/views/{view}", None),
    "list-with-view": ("GET", "/tickets?view_id={view}", None),
}


ADMIN_ONLY = frozenset({"patch-category"})


@pytest.mark.parametrize("route", list(ROUTES))
async def test_another_organizations_ids_are_not_found(world: World, route: str) -> None:
    method, template, body = ROUTES[route]
    url = API + template.format(**world.ids)
    before = await snapshot(world.b)
    # Agents too, except on admin-only routes, where their role is refused before any lookup.
    callers = [world.a.admin] + ([] if route in ADMIN_ONLY else [world.a.agent])
    for who in callers:
        r = await world.client.request(method, url, json=body, headers=who.headers)
        problem(r, 404)
    assert await snapshot(world.b) == before
    # The same route works in B (the ids are real), so the 404 is isolation, not a typo.
    if method == "GET" and "own_" not in template:
        r = await world.client.request(method, url, headers=world.b.admin.headers)
        assert r.status_code == 200, r.text


async def test_every_id_route_is_covered(app: Any) -> None:
    """A new ticket-core route that takes an id must be added to ROUTES."""
    covered = {(m, API + t.split("?")[0]) for m, t, _ in ROUTES.values()}
    names = {
        "ticket": "ticket_id",
        "own_ticket": "ticket_id",
        "comment": "comment_id",
        "category": "category_id",
        "view": "view_id",
        "number": "number",
    }
    covered = {(m, p.format(**{k: "{" + v + "}" for k, v in names.items()})) for m, p in covered}
    missing = []
    for path, operations in app.openapi()["paths"].items():
        if not path.startswith((f"{API}/tickets", f"{API}/categories", f"{API}/views")):
            continue
        if "{" not in path or "/attachments" in path:
            continue  # attachments have their own isolation tests
        for method in operations:
            if (method.upper(), path) not in covered:
                missing.append((method.upper(), path))
    assert missing == []
    assert len(covered) >= 14


async def test_references_to_another_organizations_rows_are_refused(world: World) -> None:
    a, b = world.a, world.b
    before = await snapshot(b)
    for overrides in (
        {"category_id": b.it["id"]},
        {"requester_id": str(b.requester.user.id)},
        {"assignee_id": str(b.agent.user.id)},
        {"department_id": b.it_dept["id"]},
    ):
        r = await world.client.post(
            TICKETS, json=a.ticket_body(**overrides), headers=a.agent.headers
        )
        problem(r, 422)
    own = await a.get({"id": world.ids["own_ticket"]})
    for change in (
        {"category_id": b.it["id"]},
        {"assignee_id": str(b.agent.user.id)},
        {"department_id": b.it_dept["id"]},
    ):
        r = await world.client.patch(
            f"{TICKETS}/{own['id']}",
            json={"version": own["version"], **change},
            headers=a.agent.headers,
        )
        problem(r, 422)
    r = await world.client.post(
        f"{API}/categories",
        json={"name": "Child", "parent_id": b.it["id"]},
        headers=a.admin.headers,
    )
    problem(r, 422)
    # Mentions of B's staff are ignored.
    reply = await a.comment(
        {"id": world.ids["own_ticket"]}, f"cc @{b.agent.user.email} @{b.admin.user.email}"
    )
    assert reply["mentions"] == []
    assert await snapshot(b) == before


async def test_listing_and_search_never_cross_organizations(world: World) -> None:
    a, b = world.a, world.b
    a_ids = {t["id"] for t in await a.listing()}
    b_ids = {t["id"] for t in await b.listing()}
    assert world.ids["own_ticket"] in a_ids and world.ids["ticket"] in b_ids
    assert not a_ids & b_ids
    assert await a.search("Bravo's reply") == []
    assert world.ids["ticket"] in {t["id"] for t in await b.search("Bravo's reply")}
    assert world.ids["ticket"] not in {t["id"] for t in await a.search(world.ids["number"])}
    r = await world.client.get(
        TICKETS, params={"requester_id": str(b.requester.user.id)}, headers=a.admin.headers
    )
    assert r.status_code == 200 and r.json()["items"] == []
    r = await world.client.get(f"{API}/categories", headers=a.admin.headers)
    assert b.it["id"] not in {c["id"] for c in r.json()}
    r = await world.client.get(VIEWS, headers=a.admin.headers)
    assert r.json() == []
    # B's token is only good in B.
    r = await world.client.get(
        f"{TICKETS}/{world.ids['ticket']}",
        headers={**b.admin.headers, "X-Tenant-ID": a.org.slug},
    )
    problem(r, 401)


# Requesters ----------------------------------------------------------------------------------

REQUESTER_ROUTES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "get-ticket": ("GET", "/tickets/{ticket}", None),
    "get-by-number": ("GET", "/tickets/by-number/{number}", None),
    "history": ("GET", "/tickets/{ticket}/history", None),
    "list-comments": ("GET", "/tickets/{ticket}/comments", None),
    "revisions": ("GET", "/tickets/{ticket}/comments/{comment}/revisions", None),
    "patch-ticket": ("PATCH", "/tickets/{ticket}", {"priority": "low", "version": 1}),
    "change-status": ("POST", "/tickets/{ticket}/status", {"status": "closed", "version": 1}),
    "add-comment": ("POST", "/tickets/{ticket}/comments", {"body": "Me too!"}),
    "edit-comment": ("PATCH", "/tickets/{ticket}/comments/{comment}", {"body": "Changed"}),
    "delete-comment": ("DELETE", "/tickets/{ticket}/comments/{comment}", None),
}


async def test_requesters_get_404_for_another_requesters_ticket(desk: Desk) -> None:
    mine = await desk.file(desk.requester)
    theirs = await desk.file(desk.requester2)
    reply = await desk.comment(theirs, "Their own words.", desk.requester2)
    ids = {"ticket": theirs["id"], "number": theirs["number"], "comment": reply["id"]}
    before = await snapshot(desk)
    wrong = []
    for name, (method, template, body) in REQUESTER_ROUTES.items():
        r = await desk.client.request(
            method, API + template.format(**ids), json=body, headers=desk.requester.headers
        )
        if r.status_code != 404:
            wrong.append((name, r.status_code, r.text))
    assert wrong == []
    assert await snapshot(desk) == before
    # The owner reaches the same routes.
    r = await desk.client.get(f"{TICKETS}/{theirs['id']}", headers=desk.requester2.headers)
    assert r.status_code == 200
    # And the first requester still has their own.
    assert {t["id"] for t in await desk.listing(desk.requester)} == {mine["id"]}


async def test_department_restricted_agents_see_their_department_and_their_own(
    desk: Desk, make_user: MakeUser, login: Login
) -> None:
    finance_agent = await login(
        await make_user(desk.org, Role.AGENT, department_id=uuid.UUID(desk.finance_dept["id"])),
        desk.org,
    )
    budget = await desk.file(category=desk.budget, subject="Budget for new monitors")
    it = await desk.file(subject="Monitor cable missing")
    assigned = await desk.file(subject="Monitor arm broken")
    r = await desk.patch(assigned, desk.admin, assignee_id=str(finance_agent.user.id))
    assert r.status_code == 200
    # Unrestricted, every agent sees every ticket.
    assert len(await desk.listing(finance_agent)) == 3
    await desk.set_settings(agents_restricted_to_departments=True)
    visible = {budget["id"], assigned["id"]}
    assert {t["id"] for t in await desk.listing(finance_agent)} == visible
    assert {t["id"] for t in await desk.search("monitor", finance_agent)} == visible
    r = await desk.client.get(f"{TICKETS}/{it['id']}", headers=finance_agent.headers)
    problem(r, 404)
    r = await desk.client.get(f"{TICKETS}/by-number/{it['number']}", headers=finance_agent.headers)
    problem(r, 404)
    r = await desk.client.post(
        f"{TICKETS}/{it['id']}/comments", json={"body": "Sneaky"}, headers=finance_agent.headers
    )
    problem(r, 404)
    # Admins and managers still see everything.
    assert len(await desk.listing(desk.manager)) == 3
    assert len(await desk.listing(desk.admin)) == 3
