"""Listing and search: every filter, the sorts, keyset pagination over all pages, cursor
tampering, full-text search (weights, public comments, highlights, escaping, fuzzy number and
subject matches, hostile queries), visibility of results, and saved views."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import Session
from tests.ticket_helpers import (
    TICKETS,
    VIEWS,
    Desk,
    desk_fixture,  # noqa: F401
    problem,
)

PRIORITIES = ["low", "medium", "high", "critical"]
RANK = {p: i for i, p in enumerate(PRIORITIES, start=1)}
CHANNELS = ["web", "email", "api", "chat"]
STATUSES = ["new", "open", "in_progress", "on_hold", "resolved", "closed", "rejected"]
BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Row:
    """What the corpus put into one ticket, to compute expected answers from."""

    id: str
    requester_id: str
    assignee_id: str | None
    category_id: str
    subcategory_id: str | None
    department_id: str | None
    priority: str
    channel: str
    status: str
    tags: list[str]
    submitted_at: datetime
    updated_at: datetime

    def key(self, sort: str) -> tuple[Any, ...]:
        if sort == "priority":
            return (RANK[self.priority], self.updated_at, uuid.UUID(self.id))
        if sort == "submitted":
            return (self.submitted_at, uuid.UUID(self.id))
        return (self.updated_at, uuid.UUID(self.id))


async def build_corpus(desk: Desk, n: int = 30) -> list[Row]:
    """`n` tickets with cycling properties, then statuses and times set directly (with ties)."""
    requesters = [desk.requester, desk.requester2]
    assignees: list[Session | None] = [desk.agent, None, desk.agent2, None, desk.admin]
    categories = [desk.it, desk.budget, desk.hardware]

    async def one(i: int) -> dict[str, Any]:
        assignee = assignees[i % 5]
        tags = ["even"] if i % 2 == 0 else ["odd"]
        if i % 3 == 0:
            tags.append("third")
        return await desk.file(
            desk.agent,
            categories[i % 3],
            subject=f"Corpus ticket number {i:02d}",
            requester_id=str(requesters[i % 2].user.id),
            assignee_id=str(assignee.user.id) if assignee else None,
            priority=PRIORITIES[i % 4],
            channel=CHANNELS[(i // 2) % 4],
            tags=tags,
        )

    created = await asyncio.gather(*(one(i) for i in range(n)))
    rows = []
    for i, t in enumerate(created):
        rows.append(
            Row(
                id=t["id"],
                requester_id=t["requester_id"],
                assignee_id=t["assignee_id"],
                category_id=t["category_id"],
                subcategory_id=t["subcategory_id"],
                department_id=t["department_id"],
                priority=t["priority"],
                channel=t["channel"],
                status=STATUSES[i % 7],
                tags=t["tags"],
                submitted_at=BASE + timedelta(days=i // 3),  # ties of three
                updated_at=BASE + timedelta(days=40, hours=(i * 7) % 11),  # many ties
            )
        )
    async with desk.runtime.db.session() as session:
        await session.execute(
            text(
                "UPDATE tickets SET status = :status, submitted_at = :s, updated_at = :u "
                "WHERE id = :id"
            ),
            [
                {"status": r.status, "s": r.submitted_at, "u": r.updated_at, "id": uuid.UUID(r.id)}
                for r in rows
            ],
        )
    return rows


@pytest.fixture
async def corpus(desk: Desk) -> list[Row]:
    return await build_corpus(desk)


async def ids(desk: Desk, who: Session | None = None, **params: Any) -> set[str]:
    return {t["id"] for t in await desk.listing(who, **params)}


def matching(rows: list[Row], predicate: Callable[[Row], bool]) -> set[str]:
    return {r.id for r in rows if predicate(r)}


# Filters -------------------------------------------------------------------------------------


async def test_every_filter(desk: Desk, corpus: list[Row]) -> None:
    rows = corpus
    agent = str(desk.agent.user.id)
    cases: list[tuple[dict[str, Any], Callable[[Row], bool]]] = [
        ({}, lambda r: True),
        ({"status": "open"}, lambda r: r.status == "open"),
        (
            {"status": ["new", "on_hold", "closed"]},
            lambda r: r.status in ("new", "on_hold", "closed"),
        ),
        ({"priority": "critical"}, lambda r: r.priority == "critical"),
        ({"priority": ["low", "high"]}, lambda r: r.priority in ("low", "high")),
        ({"category_id": desk.it["id"]}, lambda r: r.category_id == desk.it["id"]),
        ({"category_id": desk.hardware["id"]}, lambda r: r.subcategory_id == desk.hardware["id"]),
        ({"category_id": desk.budget["id"]}, lambda r: r.category_id == desk.budget["id"]),
        (
            {"department_id": desk.finance_dept["id"]},
            lambda r: r.department_id == desk.finance_dept["id"],
        ),
        ({"department_id": desk.it_dept["id"]}, lambda r: r.department_id == desk.it_dept["id"]),
        ({"assignee": "none"}, lambda r: r.assignee_id is None),
        (
            {"assignee": str(desk.agent2.user.id)},
            lambda r: r.assignee_id == str(desk.agent2.user.id),
        ),
        (
            {"assignee": str(desk.agent2.user.id).upper()},
            lambda r: r.assignee_id == str(desk.agent2.user.id),
        ),
        (
            {"requester_id": str(desk.requester2.user.id)},
            lambda r: r.requester_id == str(desk.requester2.user.id),
        ),
        ({"tag": "third"}, lambda r: "third" in r.tags),
        ({"tag": " EVEN "}, lambda r: "even" in r.tags),
        ({"tag": "missing"}, lambda r: False),
        ({"channel": "chat"}, lambda r: r.channel == "chat"),
        (
            {"submitted_from": (BASE + timedelta(days=3)).isoformat()},
            lambda r: r.submitted_at >= BASE + timedelta(days=3),
        ),
        (
            {"submitted_to": (BASE + timedelta(days=3)).isoformat()},
            lambda r: r.submitted_at < BASE + timedelta(days=3),
        ),
        (
            {
                "submitted_from": (BASE + timedelta(days=2)).isoformat(),
                "submitted_to": (BASE + timedelta(days=5)).isoformat(),
            },
            lambda r: BASE + timedelta(days=2) <= r.submitted_at < BASE + timedelta(days=5),
        ),
        (
            {
                "updated_from": (BASE + timedelta(days=40, hours=3)).isoformat(),
                "updated_to": (BASE + timedelta(days=40, hours=8)).isoformat(),
            },
            lambda r: (
                BASE + timedelta(days=40, hours=3)
                <= r.updated_at
                < BASE + timedelta(days=40, hours=8)
            ),
        ),
        (
            {"status": ["open", "new"], "priority": "low", "tag": "even", "assignee": "none"},
            lambda r: (
                r.status in ("open", "new")
                and r.priority == "low"
                and "even" in r.tags
                and r.assignee_id is None
            ),
        ),
    ]
    wrong = []
    for params, predicate in cases:
        expected = matching(rows, predicate)
        actual = await ids(desk, **params)
        if actual != expected:
            wrong.append((params, len(expected), len(actual)))
    assert wrong == []
    # `me` is the caller.
    assert await ids(desk, desk.agent, assignee="me") == matching(
        rows, lambda r: r.assignee_id == agent
    )
    assert await ids(desk, desk.agent2, assignee="me") == matching(
        rows, lambda r: r.assignee_id == str(desk.agent2.user.id)
    )
    # Requesters only ever list their own tickets, whatever they filter on.
    mine = matching(rows, lambda r: r.requester_id == str(desk.requester.user.id))
    assert await ids(desk, desk.requester) == mine
    assert await ids(desk, desk.requester, requester_id=str(desk.requester2.user.id)) == set()
    assert await ids(desk, desk.requester, status="open") == matching(
        rows, lambda r: r.id in mine and r.status == "open"
    )


async def test_bad_filters_are_refused(desk: Desk) -> None:
    for params in (
        {"status": "done"},
        {"priority": "urgent"},
        {"channel": "fax"},
        {"assignee": "someone"},
        {"assignee": "-" * 36},
        {"assignee": "a" * 36},
        {"category_id": "not-a-uuid"},
        {"submitted_from": "yesterday"},
        {"sort": "subject"},
        {"order": "sideways"},
        {"limit": 0},
        {"limit": 101},
        {"tag": "x" * 51},
    ):
        r = await desk.client.get(TICKETS, params=params, headers=desk.admin.headers)
        assert r.status_code == 422, (params, r.status_code, r.text)


# Sorting and pagination ----------------------------------------------------------------------


async def walk(desk: Desk, who: Session | None = None, **params: Any) -> list[str]:
    """Every page of a listing, following next_cursor; the ids in order."""
    seen: list[str] = []
    cursor = None
    for _ in range(50):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = await desk.client.get(TICKETS, params=query, headers=(who or desk.admin).headers)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= params["limit"]
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
        assert len(page["items"]) == params["limit"]
    raise AssertionError("pagination does not end")


async def test_keyset_pagination_walks_every_sort_without_duplicates_or_gaps(
    desk: Desk, corpus: list[Row]
) -> None:
    for sort in ("updated", "submitted", "priority"):
        for order in ("asc", "desc"):
            expected = [
                r.id for r in sorted(corpus, key=lambda r: r.key(sort), reverse=order == "desc")
            ]
            seen = await walk(desk, sort=sort, order=order, limit=7)
            assert len(seen) == len(set(seen)) == 30, (sort, order)
            assert seen == expected, (sort, order)
    # The default is the most recently updated first.
    default = await walk(desk, limit=7)
    assert default == [r.id for r in sorted(corpus, key=lambda r: r.key("updated"), reverse=True)]
    # Filters and pagination together.
    seen = await walk(desk, status=["new", "open", "resolved"], sort="priority", limit=4)
    expected = [
        r.id
        for r in sorted(corpus, key=lambda r: r.key("priority"), reverse=True)
        if r.status in ("new", "open", "resolved")
    ]
    assert seen == expected
    # A requester walks only their own.
    seen = await walk(desk, desk.requester2, sort="submitted", order="asc", limit=3)
    assert seen == [
        r.id
        for r in sorted(corpus, key=lambda r: r.key("submitted"))
        if r.requester_id == str(desk.requester2.user.id)
    ]


def _token(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


async def test_tampered_and_foreign_cursors_are_refused(desk: Desk, corpus: list[Row]) -> None:
    r = await desk.client.get(TICKETS, params={"limit": 7}, headers=desk.admin.headers)
    cursor = r.json()["next_cursor"]
    assert cursor
    first_id = corpus[0].id
    tampered = [
        "garbage!!",
        cursor[:-3],
        cursor + "AAAA",
        _token(["updated", "desc", "not a time", first_id]),
        _token(["updated", "desc", "2026-01-01T00:00:00", first_id]),  # naive time
        _token(["updated", "desc", "2026-01-01T00:00:00+00:00", "not-a-uuid"]),
        _token(["updated", "desc", "2026-01-01T00:00:00+00:00"]),
        _token({"sort": "updated"}),
        _token(["updated", "desc", 5, first_id]),
    ]
    for bad in tampered:
        r = await desk.client.get(
            TICKETS, params={"cursor": bad, "limit": 7}, headers=desk.admin.headers
        )
        problem(r, 400, "invalid_cursor")
    # A cursor belongs to its sort and order.
    for params in (
        {"sort": "submitted"},
        {"sort": "priority"},
        {"order": "asc"},
        {"q": "corpus"},
    ):
        r = await desk.client.get(
            TICKETS, params={"cursor": cursor, "limit": 7, **params}, headers=desk.admin.headers
        )
        problem(r, 400, "invalid_cursor")
    r = await desk.client.get(
        TICKETS, params={"q": "corpus", "limit": 2}, headers=desk.admin.headers
    )
    search_cursor = r.json()["next_cursor"]
    assert search_cursor
    r = await desk.client.get(
        TICKETS, params={"cursor": search_cursor, "limit": 2}, headers=desk.admin.headers
    )
    problem(r, 400, "invalid_cursor")
    # The untampered cursor still works.
    r = await desk.client.get(
        TICKETS, params={"cursor": cursor, "limit": 7}, headers=desk.admin.headers
    )
    assert r.status_code == 200 and len(r.json()["items"]) == 7


# Full-text search ----------------------------------------------------------------------------


async def test_subject_outranks_description_and_comments_are_searched(desk: Desk) -> None:
    in_description = await desk.file(
        subject="Office chair broken",
        description="The wobbly keyboard tray of the desk came off as well.",
    )
    in_subject = await desk.file(
        subject="Keyboard missing keys",
        description="Several keys fell off yesterday afternoon.",
    )
    in_comment = await desk.file(
        subject="Monitor flickers", description="Flickers after lunch daily."
    )
    await desk.comment(in_comment, "Could the keyboard cable be loose?")
    unrelated = await desk.file(
        subject="Printer out of toner", description="No toner left in printer."
    )
    found = [t["id"] for t in await desk.search("keyboard")]
    assert found[0] == in_subject["id"]
    assert set(found) == {in_subject["id"], in_description["id"], in_comment["id"]}
    assert unrelated["id"] not in found
    # Ranking order is descending.
    ranks = [t["rank"] for t in await desk.search("keyboard")]
    assert ranks == sorted(ranks, reverse=True)
    # Stemming: "keyboards" finds "keyboard".
    assert in_subject["id"] in {t["id"] for t in await desk.search("keyboards")}
    # websearch syntax: a phrase and an exclusion.
    assert [t["id"] for t in await desk.search('"missing keys"')] == [in_subject["id"]]
    excluded = {t["id"] for t in await desk.search("keyboard -tray")}
    assert in_description["id"] not in excluded and in_subject["id"] in excluded


async def test_headlines_mark_matches_and_escape_markup(desk: Desk) -> None:
    ticket = await desk.file(
        subject="Monitor shows <b> tags & stuff",
        description=(
            'The monitor renders <script>alert("x")</script> and <img src=x onerror=y> oddly.'
        ),
    )
    [hit] = await desk.search("monitor")
    assert hit["id"] == ticket["id"]
    headline = hit["headline"]
    assert "<mark>Monitor</mark>" in headline and "<mark>monitor</mark>" in headline
    assert "&lt;b&gt;" in headline
    assert "&amp;" in headline
    assert "&lt;script&gt;" in headline
    without_marks = headline.replace("<mark>", "").replace("</mark>", "")
    assert "<" not in without_marks and ">" not in without_marks
    # Listing rows carry no headline or rank.
    [row] = await desk.listing()
    assert row["headline"] is None and row["rank"] is None


async def test_ticket_numbers_are_found_by_prefix(desk: Desk) -> None:
    tickets = [await desk.file(subject=f"Numbered ticket {i}") for i in range(12)]
    target = tickets[10]
    number = target["number"]
    for q in (number, number.lower(), f"  {number} "):
        assert (await desk.search(q))[0]["id"] == target["id"], q
    # A prefix finds every ticket it starts; the ones of that decade here.
    decade = {t["id"] for t in tickets if t["number"].startswith(number[:-1])}
    assert {t["id"] for t in await desk.search(number[:-1])} == decade
    assert len(decade) == 3  # …010, …011 and …012 share the prefix with …011
    r = await desk.client.get(f"{TICKETS}/by-number/{number}", headers=desk.requester.headers)
    assert r.status_code == 200 and r.json()["id"] == target["id"]


async def test_a_misspelled_subject_word_finds_the_ticket(desk: Desk) -> None:
    printer = await desk.file(subject="Printer jammed on the third floor")
    payroll = await desk.file(subject="Password reset for the payroll system")
    for q in ("printr", "Printer jamed", "jamed"):
        assert [t["id"] for t in await desk.search(q)] == [printer["id"]], q
    assert [t["id"] for t in await desk.search("payrol")] == [payroll["id"]]
    assert await desk.search("scanner") == []


async def test_fuzzy_subject_matches_only_when_exact_matches_do_not_fill_the_page(
    desk: Desk,
) -> None:
    """A word that matches many tickets exactly shows only those, on every page; a word with
    few exact matches also lists subjects that are merely like it."""
    exact = {(await desk.file(subject=f"Printer offline on floor {i}"))["id"] for i in range(5)}
    like = (await desk.file(subject="Printr offline downstairs"))["id"]  # "printr": fuzzy only

    async def pages(q: str, limit: int) -> list[list[str]]:
        out: list[list[str]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"q": q, "limit": limit}
            if cursor:
                params["cursor"] = cursor
            r = await desk.client.get(TICKETS, params=params, headers=desk.admin.headers)
            assert r.status_code == 200, r.text
            out.append([t["id"] for t in r.json()["items"]])
            cursor = r.json()["next_cursor"]
            if not cursor:
                return out

    # 5 exact matches fill pages of 2: exact only, on every page.
    walked = await pages("printer", 2)
    assert [len(p) for p in walked] == [2, 2, 1]
    assert {i for p in walked for i in p} == exact
    # Pages of 10 are not filled by the 5 exact ones: the fuzzy one joins them, ranked after.
    [page] = await pages("printer", 10)
    assert set(page) == exact | {like} and page[-1] == like
    # The rule a first page chose holds for the next pages, whatever is filed in between.
    r = await desk.client.get(
        TICKETS, params={"q": "printr", "limit": 1}, headers=desk.admin.headers
    )
    first = r.json()
    assert [t["id"] for t in first["items"]] == [like]
    cursor = first["next_cursor"]
    assert cursor
    r = await desk.client.get(
        TICKETS, params={"q": "printr", "limit": 1, "cursor": cursor}, headers=desk.admin.headers
    )
    assert r.status_code == 200 and r.json()["items"][0]["id"] in exact
    # A cursor naming no known rule is refused.
    mode, *rest = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))[1:]
    assert mode == "fuzzy"
    for bad in ("loose", 1, None):
        r = await desk.client.get(
            TICKETS,
            params={"q": "printr", "cursor": _token(["search", bad, *rest])},
            headers=desk.admin.headers,
        )
        problem(r, 400, "invalid_cursor")


HOSTILE = [
    "'; DROP TABLE tickets; --",
    "%",
    "_",
    "\\",
    "%_%",
    "' OR '1'='1",
    "TKT%",
    "tkt_",
    '"unterminated',
    "!!!",
    "a:* | b & !c",
    "<script>alert(1)</script>",
    "NULL",
    "😀 emoji",
]


async def test_hostile_queries_are_harmless(desk: Desk) -> None:
    tickets = [await desk.file(subject=f"Plain ticket {i}") for i in range(3)]
    wrong = []
    for q in HOSTILE:
        r = await desk.client.get(TICKETS, params={"q": q}, headers=desk.admin.headers)
        if r.status_code != 200:
            wrong.append((q, r.status_code, r.text))
        elif r.json()["items"]:
            wrong.append((q, "matched", [t["subject"] for t in r.json()["items"]]))
    assert wrong == []
    # Nothing was dropped or changed.
    assert {t["id"] for t in await desk.listing()} == {t["id"] for t in tickets}
    # A NUL byte cannot be searched for (PostgreSQL text holds none): refused, never a 500.
    for params in ({"q": "\x00"}, {"q": "plain\x00ticket"}, {"tag": "a\x00"}):
        r = await desk.client.get(TICKETS, params=params, headers=desk.admin.headers)
        problem(r, 422, "invalid_characters")


async def test_query_length_limit(desk: Desk) -> None:
    ticket = await desk.file(subject="Scanner offline again")
    q = ("scanner " * 25)[:200]
    assert len(q) == 200
    r = await desk.client.get(TICKETS, params={"q": q}, headers=desk.admin.headers)
    assert r.status_code == 200, r.text
    assert [t["id"] for t in r.json()["items"]] == [ticket["id"]]
    r = await desk.client.get(TICKETS, params={"q": q + "x"}, headers=desk.admin.headers)
    problem(r, 422)
    r = await desk.client.get(TICKETS, params={"q": "   "}, headers=desk.admin.headers)
    assert r.status_code == 200 and r.json()["items"][0]["headline"] is None


async def test_requesters_only_find_their_own_tickets(desk: Desk) -> None:
    mine = await desk.file(desk.requester, subject="Headset crackles loudly")
    theirs = await desk.file(desk.requester2, subject="Headset microphone muted")
    assert [t["id"] for t in await desk.search("headset", desk.requester)] == [mine["id"]]
    assert [t["id"] for t in await desk.search("headset", desk.requester2)] == [theirs["id"]]
    assert await desk.search(theirs["number"], desk.requester) == []
    assert [t["id"] for t in await desk.search(theirs["number"], desk.requester2)] == [theirs["id"]]
    assert {t["id"] for t in await desk.search("headset", desk.manager)} == {
        mine["id"],
        theirs["id"],
    }
    # Filters apply to search too.
    assert [
        t["id"] for t in await desk.search("headset", requester_id=str(desk.requester2.user.id))
    ] == [theirs["id"]]


async def test_search_results_paginate(desk: Desk) -> None:
    created = {(await desk.file(subject=f"Webcam problem {i}"))["id"] for i in range(9)}
    await desk.file(subject="Unrelated stapler")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"q": "webcam", "limit": 4}
        if cursor:
            params["cursor"] = cursor
        r = await desk.client.get(TICKETS, params=params, headers=desk.admin.headers)
        assert r.status_code == 200, r.text
        seen += [t["id"] for t in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) and set(seen) == created


# Saved views ---------------------------------------------------------------------------------


async def test_saved_views_crud(desk: Desk) -> None:
    r = await desk.client.post(
        VIEWS,
        json={"name": "My open", "filters": {"status": ["open"], "assignee": "me"}},
        headers=desk.agent.headers,
    )
    assert r.status_code == 201, r.text
    view = r.json()
    assert view["filters"] == {"status": ["open"], "assignee": "me"}
    r = await desk.client.post(VIEWS, json={"name": "my OPEN"}, headers=desk.agent.headers)
    problem(r, 409, "view_name_taken")
    # Names are per user.
    r = await desk.client.post(VIEWS, json={"name": "My open"}, headers=desk.agent2.headers)
    assert r.status_code == 201
    theirs = r.json()
    r = await desk.client.get(VIEWS, headers=desk.agent.headers)
    assert [v["id"] for v in r.json()] == [view["id"]]
    r = await desk.client.patch(
        f"{VIEWS}/{view['id']}",
        json={"name": "Open and mine", "filters": {"status": ["open", "new"]}},
        headers=desk.agent.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Open and mine" and r.json()["filters"] == {
        "status": ["open", "new"]
    }
    r = await desk.client.post(VIEWS, json={"name": "Second"}, headers=desk.agent.headers)
    second = r.json()
    r = await desk.client.patch(
        f"{VIEWS}/{second['id']}", json={"name": "open AND mine"}, headers=desk.agent.headers
    )
    problem(r, 409, "view_name_taken")
    # Another user's view does not exist for me.
    for method, body in (("PATCH", {"name": "Stolen"}), ("DELETE", None)):
        r = await desk.client.request(
            method, f"{VIEWS}/{theirs['id']}", json=body, headers=desk.agent.headers
        )
        problem(r, 404)
    r = await desk.client.get(TICKETS, params={"view_id": theirs["id"]}, headers=desk.agent.headers)
    problem(r, 404)
    r = await desk.client.get(VIEWS, headers=desk.agent2.headers)
    assert [v["name"] for v in r.json()] == ["My open"]
    # Bad filters are refused.
    for filters in (
        {"status": ["done"]},
        {"colour": "red"},
        {"sort": "subject"},
        {"assignee": "x"},
    ):
        r = await desk.client.post(
            VIEWS, json={"name": "Bad", "filters": filters}, headers=desk.agent.headers
        )
        problem(r, 422)
    r = await desk.client.delete(f"{VIEWS}/{view['id']}", headers=desk.agent.headers)
    assert r.status_code == 204
    r = await desk.client.get(VIEWS, headers=desk.agent.headers)
    assert [v["id"] for v in r.json()] == [second["id"]]
    problem(await desk.client.delete(f"{VIEWS}/{view['id']}", headers=desk.agent.headers), 404)


async def test_a_view_applies_its_filters_and_sort_to_the_listing(
    desk: Desk, corpus: list[Row]
) -> None:
    filters = {
        "status": ["new", "open", "in_progress"],
        "priority": ["high", "critical"],
        "sort": "submitted",
        "order": "asc",
    }
    r = await desk.client.post(
        VIEWS, json={"name": "Hot", "filters": filters}, headers=desk.agent.headers
    )
    assert r.status_code == 201, r.text
    view = r.json()
    expected = [
        r.id
        for r in sorted(corpus, key=lambda r: r.key("submitted"))
        if r.status in filters["status"] and r.priority in filters["priority"]
    ]
    assert expected
    got = [t["id"] for t in await desk.listing(desk.agent, view_id=view["id"])]
    assert got == expected
    # Walking the view's pages gives the same.
    assert await walk(desk, desk.agent, view_id=view["id"], limit=2) == expected
    # An explicit parameter overrides the view's.
    got = await ids(desk, desk.agent, view_id=view["id"], status="in_progress")
    assert got == {
        x for x in expected if next(r for r in corpus if r.id == x).status == "in_progress"
    }
    # A view with "me" resolves to whoever uses it, and a view with a query searches.
    r = await desk.client.post(
        VIEWS, json={"name": "Mine", "filters": {"assignee": "me"}}, headers=desk.agent2.headers
    )
    mine = await ids(desk, desk.agent2, view_id=r.json()["id"])
    assert mine == matching(corpus, lambda r: r.assignee_id == str(desk.agent2.user.id))
    r = await desk.client.post(
        VIEWS, json={"name": "Number 07", "filters": {"q": "corpus 07"}}, headers=desk.agent.headers
    )
    [hit] = await desk.listing(desk.agent, view_id=r.json()["id"], limit=1)
    assert hit["id"] == corpus[7].id and hit["headline"]
