"""Tickets: numbering, filing rules, on-behalf filing, timestamps and derived times, ETags,
the status workflow and who may move it, optimistic concurrency, idempotent creation, XSS
handling, and the change history."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select

from servicedesk.models import Organization, Role, Ticket
from servicedesk.tickets import service as ticket_service
from tests.conftest import client_for
from tests.ticket_helpers import (
    API,
    CATEGORIES,
    TICKETS,
    VIEWS,
    Desk,
    Login,
    MakeUser,
    assert_safe_html,
    build_desk,
    desk_fixture,  # noqa: F401
    error_keys,
    parse_time,
    problem,
)


async def count_tickets(desk: Desk, org: Organization | None = None) -> int:
    async with desk.runtime.db.session() as session:
        query = select(func.count()).select_from(Ticket)
        query = query.where(Ticket.organization_id == (org or desk.org).id)
        return int((await session.execute(query)).scalar_one())


def number_parts(number: str) -> tuple[int, int]:
    assert number.startswith("TKT") and len(number) == 13 and number[3:].isdigit(), number
    return int(number[3:7]), int(number[7:])


# Numbering -----------------------------------------------------------------------------------


async def test_numbers_are_tkt_year_and_six_digits_per_organization(
    desk: Desk,
    app: object,
    runtime: Any,
    make_org: Any,
    make_user: MakeUser,
    login: Login,
) -> None:
    first = await desk.file()
    second = await desk.file(desk.agent)
    year = parse_time(first["submitted_at"]).year
    assert first["number"] == f"TKT{year}000001"
    assert second["number"] == f"TKT{year}000002"
    # Another organization counts on its own.
    other_org = await make_org("Numbers Two")
    other_admin = await login(await make_user(other_org, Role.ADMIN), other_org)
    async with client_for(app) as other_client:
        other = await build_desk(other_client, runtime, other_org, other_admin, make_user, login)
        theirs = await other.file()
    assert theirs["number"] == f"TKT{year}000001"
    third = await desk.file()
    assert third["number"] == f"TKT{year}000003"
    r = await desk.client.get(
        f"{TICKETS}/by-number/{third['number'].lower()}", headers=desk.admin.headers
    )
    assert r.status_code == 200 and r.json()["id"] == third["id"], r.text


async def test_fifty_concurrent_creates_get_fifty_consecutive_numbers(
    desk: Desk, app: object
) -> None:
    sessions = [desk.requester, desk.requester2, desk.agent, desk.agent2, desk.admin]
    clients = [client_for(app) for _ in sessions]
    try:

        async def create(i: int) -> httpx.Response:
            who = sessions[i % len(sessions)]
            return await clients[i % len(clients)].post(
                TICKETS,
                json=desk.ticket_body(subject=f"Concurrent ticket {i:02d}"),
                headers=who.headers,
            )

        responses = await asyncio.gather(*(create(i) for i in range(50)))
    finally:
        for c in clients:
            await c.aclose()
    assert [r.status_code for r in responses] == [201] * 50, [r.text for r in responses[:3]]
    numbers = [number_parts(r.json()["number"]) for r in responses]
    years = {y for y, _ in numbers}
    assert len(years) == 1
    assert sorted(n for _, n in numbers) == list(range(1, 51))
    assert len({r.json()["id"] for r in responses}) == 50
    assert await count_tickets(desk) == 50
    # The next one follows on.
    assert number_parts((await desk.file())["number"])[1] == 51


async def test_numbering_restarts_each_year(desk: Desk, monkeypatch: pytest.MonkeyPatch) -> None:
    first = await desk.file()
    year, _ = number_parts(first["number"])
    new_year = datetime(year + 1, 1, 1, 0, 0, 1, tzinfo=UTC)
    monkeypatch.setattr(ticket_service, "utc_now", lambda: new_year)
    january = await desk.file()
    assert january["number"] == f"TKT{year + 1}000001"
    assert parse_time(january["submitted_at"]) == new_year
    assert (await desk.file())["number"] == f"TKT{year + 1}000002"
    monkeypatch.undo()
    assert (await desk.file())["number"] == f"TKT{year}000002"


async def test_a_refused_ticket_uses_no_number(desk: Desk) -> None:
    r = await desk.client.post(
        TICKETS,
        json=desk.ticket_body(custom_fields={"asset_name": "x"}),
        headers=desk.requester.headers,
    )
    problem(r, 422)
    r = await desk.client.post(
        TICKETS, json=desk.ticket_body(subject="\x00\x01ab\x02cd  "), headers=desk.requester.headers
    )
    problem(r, 422)
    assert number_parts((await desk.file())["number"])[1] == 1


# Filing --------------------------------------------------------------------------------------


async def test_subject_and_description_lengths(desk: Desk) -> None:
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        ({"subject": "abcd"}, 422, "subject"),
        ({"subject": "   abcd   "}, 422, "subject"),
        ({"subject": "x" * 201}, 422, "subject"),
        ({"subject": "abcde"}, 201, None),
        ({"subject": "y" * 200}, 201, None),
        ({"description": "123456789"}, 422, "description"),
        ({"description": "1234567890"}, 201, None),
        ({"description": " " * 30}, 422, "description"),
        ({"description": "\x00" * 12 + "abc"}, 422, "description"),
    ]
    wrong = []
    for overrides, status, key in cases:
        r = await desk.client.post(
            TICKETS, json=desk.ticket_body(**overrides), headers=desk.requester.headers
        )
        if r.status_code != status or (key and key not in error_keys(r.json())):
            wrong.append((overrides, r.status_code, r.text))
    assert wrong == []
    assert await count_tickets(desk) == 3


async def test_forged_fields_are_refused(desk: Desk) -> None:
    forged = {
        "organization_id": str(uuid.uuid4()),
        "number": "TKT2020999999",
        "status": "closed",
        "version": 7,
        "first_response_at": "2020-01-01T00:00:00Z",
        "reopened_count": 3,
    }
    for key, value in forged.items():
        r = await desk.client.post(
            TICKETS, json=desk.ticket_body(**{key: value}), headers=desk.requester.headers
        )
        body = problem(r, 422)
        assert key in error_keys(body), body
        assert any(e["type"] == "extra_forbidden" for e in body["errors"])
    # A requester cannot file for someone else, nor assign or route it.
    for key, value in (
        ("requester_id", str(desk.requester2.user.id)),
        ("assignee_id", str(desk.agent.user.id)),
        ("department_id", desk.finance_dept["id"]),
    ):
        r = await desk.client.post(
            TICKETS, json=desk.ticket_body(**{key: value}), headers=desk.requester.headers
        )
        assert error_keys(problem(r, 422, "field_not_allowed")) == {key}
    assert await count_tickets(desk) == 0
    # Naming oneself is fine.
    mine = await desk.file(requester_id=str(desk.requester.user.id))
    assert mine["requester_id"] == str(desk.requester.user.id)
    assert mine["status"] == "new" and mine["version"] == 1 and mine["reopened_count"] == 0


async def test_agents_file_on_behalf_of_a_requester(
    desk: Desk, other_org: Any, make_user: MakeUser
) -> None:
    ticket = await desk.file(
        desk.agent,
        requester_id=str(desk.requester.user.id),
        assignee_id=str(desk.agent2.user.id),
        department_id=desk.finance_dept["id"],
        channel="email",
    )
    assert ticket["requester_id"] == str(desk.requester.user.id)
    assert ticket["assignee_id"] == str(desk.agent2.user.id)
    assert ticket["department_id"] == desk.finance_dept["id"]
    assert ticket["channel"] == "email"
    # The requester sees it as theirs; the other requester does not see it at all.
    assert (await desk.get(ticket, desk.requester))["id"] == ticket["id"]
    r = await desk.client.get(f"{TICKETS}/{ticket['id']}", headers=desk.requester2.headers)
    problem(r, 404)
    # Only users of this organization can be requesters; only agents can be assignees.
    stranger = await make_user(other_org, Role.REQUESTER)
    r = await desk.client.post(
        TICKETS,
        json=desk.ticket_body(requester_id=str(stranger.id)),
        headers=desk.agent.headers,
    )
    assert error_keys(problem(r, 422, "invalid_requester")) == {"requester_id"}
    r = await desk.client.post(
        TICKETS,
        json=desk.ticket_body(assignee_id=str(desk.requester2.user.id)),
        headers=desk.agent.headers,
    )
    assert error_keys(problem(r, 422, "invalid_assignee")) == {"assignee_id"}


async def test_etag_is_the_quoted_version(desk: Desk) -> None:
    r = await desk.client.post(TICKETS, json=desk.ticket_body(), headers=desk.requester.headers)
    assert r.status_code == 201 and r.headers["etag"] == '"1"'
    assert r.headers["location"] == f"{TICKETS}/{r.json()['id']}"
    ticket = r.json()
    r = await desk.client.get(f"{TICKETS}/{ticket['id']}", headers=desk.agent.headers)
    assert r.headers["etag"] == '"1"'
    r = await desk.patch(ticket, priority="low")
    assert r.status_code == 200 and r.json()["version"] == 2 and r.headers["etag"] == '"2"'
    r = await desk.move(ticket, "open")
    assert r.json()["version"] == 3 and r.headers["etag"] == '"3"'
    r = await desk.client.get(
        f"{TICKETS}/by-number/{ticket['number']}", headers=desk.requester.headers
    )
    assert r.headers["etag"] == '"3"' and r.json()["version"] == 3


async def test_updated_at_moves_on_every_change(desk: Desk) -> None:
    ticket = await desk.file()
    stamps = [parse_time(ticket["updated_at"])]
    assert stamps[0] == parse_time(ticket["submitted_at"])

    async def changed() -> None:
        now = parse_time((await desk.get(ticket))["updated_at"])
        assert now > stamps[-1]
        stamps.append(now)

    assert (await desk.patch(ticket, tags=["vpn"])).status_code == 200
    await changed()
    assert (await desk.patch(ticket, assignee_id=str(desk.agent.user.id))).status_code == 200
    await changed()
    assert (await desk.move(ticket, "in_progress")).status_code == 200
    await changed()
    await desk.comment(ticket, "Looking into it.")
    await changed()
    await desk.comment(ticket, "Checked the logs.", internal=True)
    await changed()
    await desk.comment(ticket, "Any news?", desk.requester)
    await changed()
    # A PATCH that changes nothing is no change.
    r = await desk.patch(ticket, tags=["vpn"])
    assert r.status_code == 200 and parse_time(r.json()["updated_at"]) == stamps[-1]
    assert r.json()["submitted_at"] == ticket["submitted_at"]


async def test_first_response_is_the_first_public_agent_reply(desk: Desk) -> None:
    ticket = await desk.file()
    await desk.age_ticket(ticket, "submitted_at", timedelta(hours=2))
    await desk.comment(ticket, "Adding details myself.", desk.requester)
    await desk.comment(ticket, "Customer is a VIP.", desk.agent, internal=True)
    current = await desk.get(ticket)
    assert current["first_response_at"] is None and current["response_seconds"] is None
    # Replies do not bump the version: a colleague's pending edit does not go stale.
    assert current["version"] == 1
    reply = await desk.comment(ticket, "We are on it.", desk.agent)
    current = await desk.get(ticket, desk.requester)
    assert current["first_response_at"] is not None
    first = parse_time(current["first_response_at"])
    assert abs(first - parse_time(reply["created_at"])) < timedelta(seconds=5)
    submitted = parse_time(current["submitted_at"])
    assert current["response_seconds"] == int((first - submitted).total_seconds())
    assert 7190 <= current["response_seconds"] <= 7300
    # Later replies keep the first response.
    await desk.comment(ticket, "Another reply.", desk.admin)
    assert (await desk.get(ticket))["first_response_at"] == current["first_response_at"]
    # Resolution time is derived from resolved_at.
    assert current["resolution_seconds"] is None
    assert (await desk.move(ticket, "resolved")).status_code == 200
    resolved = await desk.get(ticket)
    expected = parse_time(resolved["resolved_at"]) - submitted
    assert resolved["resolution_seconds"] == int(expected.total_seconds())
    assert resolved["resolution_seconds"] >= 7200


async def test_admin_public_reply_counts_as_first_response(desk: Desk) -> None:
    ticket = await desk.file()
    await desk.comment(ticket, "Admin answering.", desk.admin)
    assert (await desk.get(ticket))["first_response_at"] is not None


async def test_managers_and_requesters_cannot_patch(desk: Desk) -> None:
    ticket = await desk.file()
    other = await desk.file(desk.requester2)
    for who, target, status in (
        (desk.manager, ticket, 403),
        (desk.requester, ticket, 403),
        (desk.requester, other, 404),
    ):
        r = await desk.client.patch(
            f"{TICKETS}/{target['id']}",
            json={"priority": "low", "version": 1},
            headers=who.headers,
        )
        problem(r, status)
    assert (await desk.get(ticket))["priority"] == "high"
    assert (await desk.get(other))["version"] == 1


async def test_patch_changes_properties_and_validates_them(desk: Desk) -> None:
    ticket = await desk.file()
    r = await desk.patch(
        ticket,
        subject="Laptop dead after update",
        description="It died after **last night's** update.",
        priority="critical",
        tags=["Laptop", "URGENT ", "laptop"],
        department_id=desk.finance_dept["id"],
        custom_fields={"serial_number": "SN-9999"},
    )
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["subject"] == "Laptop dead after update"
    assert "<strong>last night" in t["description_html"]
    assert t["priority"] == "critical" and t["tags"] == ["laptop", "urgent"]
    assert t["department_id"] == desk.finance_dept["id"]
    assert t["custom_fields"]["serial_number"] == "SN-9999"
    assert t["custom_fields"]["asset_name"] == "MBP-0042"
    # Moving to another category revalidates against its fields.
    r = await desk.patch(ticket, category_id=desk.budget["id"])
    assert error_keys(problem(r, 422, "invalid_custom_fields")) >= {"asset_name", "cost_items"}
    bad = [
        ({"subject": "abc"}, "subject"),
        ({"subject": "a\x00\x01\x02\x03\x04bc"}, "subject"),
        ({"description": "\x00" * 12 + "abc"}, "description"),
        ({"subject": None}, "subject"),
        ({"priority": "urgent"}, "priority"),
        ({"assignee_id": str(desk.requester.user.id)}, "assignee_id"),
        ({"department_id": str(uuid.uuid4())}, "department_id"),
        ({"custom_fields": {"issue_type": "Printer"}}, "issue_type"),
        ({"tags": ["<b>"]}, "tags"),
        ({"status": "closed"}, "status"),
    ]
    for change, key in bad:
        r = await desk.patch(ticket, **change)
        assert key in error_keys(problem(r, 422)), (change, r.text)
    assert (await desk.get(ticket))["version"] == 2


# Workflow ------------------------------------------------------------------------------------


async def test_the_happy_path_through_the_workflow(desk: Desk) -> None:
    ticket = await desk.file()
    assert (await desk.get(ticket, desk.agent))["allowed_transitions"] == [
        "closed",
        "in_progress",
        "on_hold",
        "open",
        "rejected",
        "resolved",
    ]
    for status in ("open", "in_progress", "on_hold", "in_progress", "on_hold", "resolved"):
        r = await desk.move(ticket, status)
        assert r.status_code == 200 and r.json()["status"] == status, r.text
    resolved = r.json()
    assert resolved["resolved_at"] is not None and resolved["closed_at"] is None
    assert resolved["allowed_transitions"] == ["closed", "open"]
    r = await desk.move(ticket, "closed")
    closed = r.json()
    assert closed["status"] == "closed" and closed["closed_at"] is not None
    assert closed["resolved_at"] == resolved["resolved_at"]
    assert closed["allowed_transitions"] == []


async def test_illegal_moves_list_the_allowed_ones(desk: Desk) -> None:
    ticket = await desk.file()
    r = await desk.move(ticket, "new")
    body = problem(r, 422, "invalid_transition")
    assert body["current"] == "new" and "open" in body["allowed"] and "new" not in body["allowed"]
    assert (await desk.move(ticket, "resolved")).status_code == 200
    r = await desk.move(ticket, "in_progress")
    body = problem(r, 422, "invalid_transition")
    assert body["allowed"] == ["closed", "open"] and body["current"] == "resolved"
    assert (await desk.move(ticket, "closed")).status_code == 200
    for status in ("open", "resolved", "rejected", "new"):
        body = problem(await desk.move(ticket, status), 422, "invalid_transition")
        assert body["allowed"] == []
    r = await desk.client.post(
        f"{TICKETS}/{ticket['id']}/status",
        json={"status": "finished", "version": 3},
        headers=desk.agent.headers,
    )
    problem(r, 422)
    assert (await desk.get(ticket))["status"] == "closed"


async def test_rejecting_needs_a_reason(desk: Desk) -> None:
    ticket = await desk.file()
    for reason in (None, "", "   "):
        r = await desk.move(ticket, "rejected", reason=reason)
        assert error_keys(problem(r, 422, "reason_required")) == {"reason"}
    r = await desk.move(ticket, "rejected", reason="Duplicate of another ticket")
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["status"] == "rejected" and t["rejection_reason"] == "Duplicate of another ticket"
    assert t["closed_at"] is not None and t["allowed_transitions"] == []
    problem(await desk.move(ticket, "open"), 422, "invalid_transition")


async def test_requester_closes_own_ticket_but_nothing_else(desk: Desk) -> None:
    ticket = await desk.file()
    mine = await desk.get(ticket, desk.requester)
    assert mine["allowed_transitions"] == ["closed"]
    for status in ("open", "in_progress", "resolved", "rejected"):
        body = problem(await desk.move(ticket, status, desk.requester, reason="x"), 422)
        assert body["allowed"] == ["closed"]
    # Another requester's ticket does not exist for them.
    problem(await desk.move(ticket, "closed", desk.requester2), 404)
    r = await desk.move(ticket, "closed", desk.requester)
    assert r.status_code == 200 and r.json()["status"] == "closed", r.text


async def test_requester_reopens_a_resolved_ticket_within_the_window(desk: Desk) -> None:
    ticket = await desk.file()
    assert (await desk.move(ticket, "resolved")).status_code == 200
    assert (await desk.get(ticket, desk.requester))["allowed_transitions"] == ["closed", "open"]
    r = await desk.move(ticket, "open", desk.requester)
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["status"] == "open" and t["reopened_count"] == 1 and t["resolved_at"] is None
    # Resolved again, the window runs from the new resolution; past it, no reopening.
    assert (await desk.move(ticket, "resolved")).status_code == 200
    await desk.age_ticket(ticket, "resolved_at", timedelta(days=8))
    assert (await desk.get(ticket, desk.requester))["allowed_transitions"] == ["closed"]
    body = problem(await desk.move(ticket, "open", desk.requester), 422, "invalid_transition")
    assert body["allowed"] == ["closed"]
    # Agents may still reopen, which counts as well.
    r = await desk.move(ticket, "open", desk.agent)
    assert r.status_code == 200 and r.json()["reopened_count"] == 2


async def test_the_reopen_window_is_an_organization_setting(desk: Desk) -> None:
    ticket = await desk.file()
    assert (await desk.move(ticket, "resolved")).status_code == 200
    await desk.age_ticket(ticket, "resolved_at", timedelta(days=3))
    assert "open" in (await desk.get(ticket, desk.requester))["allowed_transitions"]
    await desk.set_settings(reopen_window_days=2)
    problem(await desk.move(ticket, "open", desk.requester), 422, "invalid_transition")
    await desk.set_settings(reopen_window_days=0)
    other = await desk.file()
    assert (await desk.move(other, "resolved")).status_code == 200
    problem(await desk.move(other, "open", desk.requester), 422, "invalid_transition")
    await desk.set_settings(reopen_window_days=30)
    r = await desk.move(ticket, "open", desk.requester)
    assert r.status_code == 200 and r.json()["reopened_count"] == 1


async def test_managers_cannot_change_the_status(desk: Desk) -> None:
    ticket = await desk.file()
    assert (await desk.get(ticket, desk.manager))["allowed_transitions"] == []
    r = await desk.move(ticket, "open", desk.manager)
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "read_only"
    assert (await desk.get(ticket))["status"] == "new"


# Versions ------------------------------------------------------------------------------------


async def test_a_change_needs_the_version_it_was_based_on(desk: Desk) -> None:
    ticket = await desk.file()
    url = f"{TICKETS}/{ticket['id']}"
    r = await desk.client.patch(url, json={"priority": "low"}, headers=desk.agent.headers)
    problem(r, 422, "version_required")
    r = await desk.client.post(f"{url}/status", json={"status": "open"}, headers=desk.agent.headers)
    problem(r, 422, "version_required")
    # A colleague changes it first (with If-Match) …
    r = await desk.client.patch(
        url, json={"priority": "critical"}, headers={**desk.agent2.headers, "If-Match": '"1"'}
    )
    assert r.status_code == 200 and r.json()["version"] == 2
    # … so a change based on version 1 is stale, whichever way the version is sent.
    for headers, body in (
        ({"If-Match": '"1"'}, {"priority": "low"}),
        ({"If-Match": 'W/"1"'}, {"priority": "low"}),
        ({}, {"priority": "low", "version": 1}),
    ):
        r = await desk.client.patch(url, json=body, headers={**desk.agent.headers, **headers})
        conflict = problem(r, 409, "version_conflict")
        assert conflict["current"]["version"] == 2
        assert conflict["current"]["priority"] == "critical"
        assert conflict["current"]["id"] == ticket["id"]
    r = await desk.client.post(
        f"{url}/status",
        json={"status": "open"},
        headers={**desk.agent.headers, "If-Match": '"1"'},
    )
    assert problem(r, 409, "version_conflict")["current"]["status"] == "new"
    assert (await desk.get(ticket))["priority"] == "critical"
    # With the current version both ways work.
    r = await desk.client.patch(
        url, json={"priority": "low", "version": 2}, headers=desk.agent.headers
    )
    assert r.status_code == 200 and r.json()["version"] == 3
    r = await desk.client.post(
        f"{url}/status", json={"status": "open"}, headers={**desk.agent.headers, "If-Match": '"3"'}
    )
    assert r.status_code == 200 and r.json()["version"] == 4


async def test_malformed_if_match_is_a_bad_request(desk: Desk) -> None:
    ticket = await desk.file()
    url = f"{TICKETS}/{ticket['id']}"
    for value in ("abc", '"one"', "1,2", '"-1"', "*", '"99999999999"'):
        r = await desk.client.patch(
            url, json={"priority": "low"}, headers={**desk.agent.headers, "If-Match": value}
        )
        problem(r, 400, "invalid_if_match")
    assert (await desk.get(ticket))["version"] == 1


async def test_concurrent_patches_on_one_version_let_one_win(desk: Desk, app: object) -> None:
    ticket = await desk.file()
    sessions = [desk.agent, desk.agent2, desk.admin] * 2
    clients = [client_for(app) for _ in sessions]
    try:
        responses = await asyncio.gather(
            *(
                c.patch(
                    f"{TICKETS}/{ticket['id']}",
                    json={"subject": f"Edited concurrently {i}", "version": 1},
                    headers=who.headers,
                )
                for i, (c, who) in enumerate(zip(clients, sessions, strict=True))
            )
        )
    finally:
        for c in clients:
            await c.aclose()
    assert sorted(r.status_code for r in responses) == [200] + [409] * 5
    winner = next(r.json() for r in responses if r.status_code == 200)
    assert (await desk.get(ticket))["subject"] == winner["subject"]


# Idempotency ---------------------------------------------------------------------------------


async def test_a_retried_create_returns_the_first_ticket(desk: Desk) -> None:
    body = desk.ticket_body()
    headers = {**desk.requester.headers, "Idempotency-Key": "create-1"}
    first = await desk.client.post(TICKETS, json=body, headers=headers)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    # The ticket changes meanwhile; the retry still answers what the first call answered.
    assert (await desk.patch(first.json(), priority="low")).status_code == 200
    again = await desk.client.post(TICKETS, json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["etag"] == '"1"'
    assert again.headers["location"] == first.headers["location"]
    assert await count_tickets(desk) == 1
    # The same key with another body is a client bug.
    r = await desk.client.post(
        TICKETS, json={**body, "subject": "Something else entirely"}, headers=headers
    )
    problem(r, 422, "idempotency_key_reused")
    assert await count_tickets(desk) == 1
    # Keys are per user: another user's identical key files their own ticket.
    r = await desk.client.post(
        TICKETS, json=body, headers={**desk.requester2.headers, "Idempotency-Key": "create-1"}
    )
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers
    assert r.json()["id"] != first.json()["id"]
    assert r.json()["requester_id"] == str(desk.requester2.user.id)
    assert await count_tickets(desk) == 2


async def test_a_failed_create_does_not_burn_its_key(desk: Desk) -> None:
    headers = {**desk.requester.headers, "Idempotency-Key": "retry-after-fix"}
    r = await desk.client.post(TICKETS, json=desk.ticket_body(custom_fields={}), headers=headers)
    problem(r, 422, "invalid_custom_fields")
    r = await desk.client.post(TICKETS, json=desk.ticket_body(), headers=headers)
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers
    assert await count_tickets(desk) == 1


async def test_bad_idempotency_keys_are_refused(desk: Desk) -> None:
    for key in ("", "x" * 256, "tab\there"):
        r = await desk.client.post(
            TICKETS,
            json=desk.ticket_body(),
            headers={**desk.requester.headers, "Idempotency-Key": key},
        )
        assert r.status_code == 400, (key, r.text)
        assert r.json()["code"] == "invalid_idempotency_key"
    assert await count_tickets(desk) == 0


async def test_concurrent_duplicates_create_exactly_one_ticket(desk: Desk, app: object) -> None:
    body = desk.ticket_body()
    clients = [client_for(app) for _ in range(8)]
    try:
        responses = await asyncio.gather(
            *(
                c.post(
                    TICKETS,
                    json=body,
                    headers={**desk.requester.headers, "Idempotency-Key": "double-click"},
                )
                for c in clients
            )
        )
    finally:
        for c in clients:
            await c.aclose()
    assert [r.status_code for r in responses] == [201] * 8, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 7
    assert await count_tickets(desk) == 1


# XSS -----------------------------------------------------------------------------------------

XSS = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](java&#115;cript:alert(1))",
    "<a href='javascript:alert(1)'>x</a>",
    "<javascript:alert(1)>",
    "![pixel](http://evil.example/p.png)",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<svg onload=alert(1)>",
    '<iframe src="https://evil.example"></iframe>',
    "[ok](https://example.com/help)",
]


async def test_markup_in_descriptions_is_rendered_harmlessly(desk: Desk) -> None:
    description = "Steps to reproduce:\n\n" + "\n\n".join(XSS)
    ticket = await desk.file(description=description)
    assert ticket["description"] == description
    html = ticket["description_html"]
    assert_safe_html(html)
    assert '<a href="https://example.com/help"' in html and 'rel="noopener' in html
    assert "&lt;script&gt;" in html
    r = await desk.patch(ticket, description="Now <script>evil()</script> and " + XSS[1])
    assert r.status_code == 200
    assert_safe_html(r.json()["description_html"])
    assert_safe_html((await desk.get(ticket, desk.requester))["description_html"])


async def test_subject_is_plain_text_and_custom_values_stay_data(desk: Desk) -> None:
    subject = "<script>alert(1)</script> <img src=x onerror=alert(2)>"
    ticket = await desk.file(
        subject="\x07" + subject + "\x00",
        custom_fields={
            "asset_name": "<img src=x onerror=alert(3)>",
            "issue_type": "Other",
            "other_issue": "[x](javascript:alert(4)) <script>alert(5)</script>",
        },
    )
    assert ticket["subject"] == subject
    assert ticket["custom_fields"]["asset_name"] == "<img src=x onerror=alert(3)>"
    assert ticket["custom_fields"]["other_issue"] == (
        "[x](javascript:alert(4)) <script>alert(5)</script>"
    )
    # No HTML is generated from the subject or the custom fields: only the description has any.
    assert [k for k in ticket if k.endswith("_html")] == ["description_html"]
    assert "alert(1)" not in ticket["description_html"]
    assert "alert(3)" not in ticket["description_html"]


async def test_tags_with_markup_characters_are_refused(desk: Desk) -> None:
    for tag in ("<b>", "a>b", 'say"hi', "it's", "`cmd`", "tab\tbed"):
        r = await desk.client.post(
            TICKETS, json=desk.ticket_body(tags=["fine", tag]), headers=desk.requester.headers
        )
        assert "tags" in {str(part) for e in problem(r, 422)["errors"] for part in e["loc"]}, tag
    assert await count_tickets(desk) == 0
    ticket = await desk.file(tags=["VPN", " wifi  ", "vpn", "café-2nd_floor"])
    assert ticket["tags"] == ["vpn", "wifi", "café-2nd_floor"]


async def test_nul_bytes_are_refused_never_a_500(desk: Desk) -> None:
    """PostgreSQL text holds no NUL: inputs that are stored as given are refused with 422."""
    ticket = await desk.file()
    cases: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", CATEGORIES, {"name": "Bad\x00name"}),
        ("POST", CATEGORIES, {"name": "Facilities", "description": "Desks\x00"}),
        (
            "POST",
            CATEGORIES,
            {"name": "Rooms", "fields": [{"key": "k", "label": "L\x00", "type": "text"}]},
        ),
        ("PATCH", f"{CATEGORIES}/{desk.it['id']}", {"name": "IT\x00"}),
        ("POST", VIEWS, {"name": "View\x00"}),
        ("POST", VIEWS, {"name": "Search", "filters": {"q": "printer\x00"}}),
        (
            "POST",
            f"{TICKETS}/{ticket['id']}/status",
            {"status": "rejected", "reason": "Duplicate\x00", "version": 1},
        ),
        ("GET", f"{TICKETS}/by-number/TKT%00", None),
    ]
    wrong = []
    for method, url, body in cases:
        r = await desk.client.request(method, url, json=body, headers=desk.admin.headers)
        if r.status_code != 422 or r.json()["code"] != "invalid_characters":
            wrong.append((method, url, r.status_code, r.text[:200]))
    assert wrong == []
    r = await desk.client.get(CATEGORIES, headers=desk.admin.headers)
    assert {c["name"] for c in r.json()} == {"IT Support", "Hardware", "Budget Request"}
    assert (await desk.client.get(VIEWS, headers=desk.admin.headers)).json() == []
    assert (await desk.get(ticket))["status"] == "new"
    # Where the text is cleaned anyway (subjects, descriptions, comments, custom text), a NUL
    # is simply removed.
    clean = await desk.file(
        subject="Dock\x00ing station",
        description="Does not charge\x00 the laptop.",
        custom_fields={"asset_name": "DS\x00-1", "issue_type": "Other", "other_issue": "x\x00y"},
    )
    assert clean["subject"] == "Docking station"
    assert clean["description"] == "Does not charge the laptop."
    assert clean["custom_fields"]["asset_name"] == "DS-1"
    assert clean["custom_fields"]["other_issue"] == "xy"
    assert (await desk.comment(clean, "Fixed\x00 it."))["body"] == "Fixed it."


# History -------------------------------------------------------------------------------------


async def test_history_records_every_change_with_actor_and_values(desk: Desk) -> None:
    ticket = await desk.file()
    assert (await desk.patch(ticket, priority="critical", tags=["vpn"])).status_code == 200
    r = await desk.patch(ticket, desk.admin, assignee_id=str(desk.agent.user.id))
    assert r.status_code == 200
    assert (await desk.move(ticket, "rejected", reason="Wrong queue")).status_code == 200
    entries = await desk.history(ticket)
    assert [e["action"] for e in entries] == [
        "ticket.created",
        "ticket.updated",
        "ticket.assigned",
        "ticket.status_changed",
    ]
    created, updated, assigned, status = entries
    assert created["actor_id"] == str(desk.requester.user.id)
    assert created["new_values"]["subject"] == ticket["subject"]
    assert created["new_values"]["number"] == ticket["number"]
    assert created["new_values"]["priority"] == "high"
    assert updated["actor_id"] == str(desk.agent.user.id)
    assert updated["old_values"] == {"priority": "high", "tags": []}
    assert updated["new_values"] == {"priority": "critical", "tags": ["vpn"]}
    assert assigned["actor_id"] == str(desk.admin.user.id)
    assert assigned["old_values"] == {"assignee_id": None}
    assert assigned["new_values"] == {"assignee_id": str(desk.agent.user.id)}
    assert status["actor_id"] == str(desk.agent.user.id)
    assert status["old_values"]["status"] == "new"
    assert status["new_values"]["status"] == "rejected"
    assert status["new_values"]["reason"] == "Wrong queue"
    assert status["new_values"]["rejection_reason"] == "Wrong queue"
    times = [parse_time(e["created_at"]) for e in entries]
    assert times == sorted(times)


async def test_history_is_for_staff(desk: Desk) -> None:
    ticket = await desk.file()
    for who in (desk.agent, desk.manager, desk.admin):
        r = await desk.client.get(f"{TICKETS}/{ticket['id']}/history", headers=who.headers)
        assert r.status_code == 200 and len(r.json()) == 1
    r = await desk.client.get(f"{TICKETS}/{ticket['id']}/history", headers=desk.requester.headers)
    problem(r, 403)
    r = await desk.client.get(f"{TICKETS}/{ticket['id']}/history", headers=desk.requester2.headers)
    problem(r, 404)


async def test_refused_changes_leave_no_history(desk: Desk) -> None:
    ticket = await desk.file()
    problem(
        await desk.client.patch(
            f"{TICKETS}/{ticket['id']}",
            json={"priority": "low", "version": 9},
            headers=desk.agent.headers,
        ),
        409,
    )
    problem(await desk.move(ticket, "rejected"), 422)
    assert [e["action"] for e in await desk.history(ticket)] == ["ticket.created"]


async def test_a_requester_suspended_after_a_ticket_cannot_get_another(desk: Desk) -> None:
    """The requester check reads through the user cache (accounts/user_cache.py): the first
    ticket fills it, the suspension drops it, and the next ticket for them is refused."""
    requester_id = str(desk.requester2.user.id)
    first = await desk.file(desk.agent, requester_id=requester_id)
    assert first["requester_id"] == requester_id
    statements: list[str] = []
    engine = desk.runtime.db.engine.sync_engine

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        await desk.file(desk.agent, requester_id=requester_id)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    # Served from the caches: no read of the users table for the requester (the agent and the
    # requester were both cached by now).
    assert not [s for s in statements if s.lstrip().startswith("SELECT") and "FROM users" in s]
    r = await desk.client.post(f"{API}/users/{requester_id}/suspend", headers=desk.admin.headers)
    assert r.status_code == 200, r.text
    r = await desk.client.post(
        TICKETS, json=desk.ticket_body(requester_id=requester_id), headers=desk.agent.headers
    )
    assert error_keys(problem(r, 422, "invalid_requester")) == {"requester_id"}
