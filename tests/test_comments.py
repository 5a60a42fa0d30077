"""Comments: public replies and internal notes (never shown to requesters anywhere), edits
with revisions inside the edit window, soft deletes, @mentions, closed tickets, and HTML
safety of bodies."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from servicedesk.models import Role
from tests.ticket_helpers import (
    TICKETS,
    Desk,
    Login,
    MakeUser,
    assert_safe_html,
    desk_fixture,  # noqa: F401
    parse_time,
    problem,
)


def comments_url(ticket: dict[str, Any], comment: dict[str, Any] | None = None) -> str:
    url = f"{TICKETS}/{ticket['id']}/comments"
    return f"{url}/{comment['id']}" if comment else url


async def age_comment(desk: Desk, comment: dict[str, Any], by: timedelta) -> None:
    await desk.sql(
        "UPDATE comments SET created_at = created_at - CAST(:by AS interval) WHERE id = :id",
        by=by,
        id=uuid.UUID(comment["id"]),
    )


async def test_replies_and_notes_are_shown_by_audience(desk: Desk) -> None:
    ticket = await desk.file()
    reply = await desk.comment(ticket, "Please restart the laptop.")
    note = await desk.comment(ticket, "Probably the SSD again (zanzibarite).", internal=True)
    answer = await desk.comment(ticket, "Restarted, still broken.", desk.requester)
    assert reply["is_internal"] is False and note["is_internal"] is True
    assert answer["author_id"] == str(desk.requester.user.id)
    for who in (desk.agent, desk.agent2, desk.admin, desk.manager):
        r = await desk.client.get(comments_url(ticket), headers=who.headers)
        assert r.status_code == 200, r.text
        assert [c["id"] for c in r.json()] == [reply["id"], note["id"], answer["id"]]
    r = await desk.client.get(comments_url(ticket), headers=desk.requester.headers)
    assert [c["id"] for c in r.json()] == [reply["id"], answer["id"]]
    assert "zanzibarite" not in r.text
    # The ticket itself carries nothing of the note either.
    r = await desk.client.get(f"{TICKETS}/{ticket['id']}", headers=desk.requester.headers)
    assert "zanzibarite" not in r.text
    # Nor do the note's revisions, edits or deletion exist for the requester.
    for method, url, body in (
        ("GET", f"{comments_url(ticket, note)}/revisions", None),
        ("PATCH", comments_url(ticket, note), {"body": "changed"}),
        ("DELETE", comments_url(ticket, note), None),
    ):
        r = await desk.client.request(method, url, json=body, headers=desk.requester.headers)
        problem(r, 404)
    # Another requester sees no conversation at all.
    r = await desk.client.get(comments_url(ticket), headers=desk.requester2.headers)
    problem(r, 404)
    r = await desk.client.post(
        comments_url(ticket), json={"body": "me too"}, headers=desk.requester2.headers
    )
    problem(r, 404)


async def test_internal_notes_are_not_searchable(desk: Desk) -> None:
    ticket = await desk.file()
    await desk.comment(ticket, "Root cause: quixotically misconfigured BIOS.", internal=True)
    await desk.comment(ticket, "We replaced the motherboard.")
    for who in (desk.requester, desk.agent, desk.admin):
        assert await desk.search("quixotically", who) == []
    # The public reply is searchable, for the requester too.
    for who in (desk.requester, desk.agent):
        assert [t["id"] for t in await desk.search("motherboard", who)] == [ticket["id"]]
    assert await desk.search("motherboard", desk.requester2) == []


async def test_history_is_staff_only_and_holds_note_events(desk: Desk) -> None:
    ticket = await desk.file()
    note = await desk.comment(ticket, "Escalate to vendor.", internal=True)
    r = await desk.client.get(f"{TICKETS}/{ticket['id']}/history", headers=desk.requester.headers)
    problem(r, 403)
    assert "Escalate" not in r.text
    entries = await desk.history(ticket)
    created = [e for e in entries if e["action"] == "comment.created"]
    assert len(created) == 1
    assert created[0]["new_values"]["is_internal"] is True
    assert created[0]["new_values"]["ticket_id"] == ticket["id"]
    assert created[0]["actor_id"] == str(desk.agent.user.id)
    assert note["id"] not in r.text


async def test_who_may_write_what(desk: Desk) -> None:
    ticket = await desk.file()
    r = await desk.client.post(
        comments_url(ticket),
        json={"body": "secret", "is_internal": True},
        headers=desk.requester.headers,
    )
    problem(r, 422, "field_not_allowed")
    for body in ("", "   \n\t", "\x00\x01\x02"):
        r = await desk.client.post(
            comments_url(ticket), json={"body": body}, headers=desk.agent.headers
        )
        problem(r, 422)
    r = await desk.client.post(
        comments_url(ticket),
        json={"body": "hello", "author_id": str(desk.admin.user.id)},
        headers=desk.agent.headers,
    )
    problem(r, 422)
    for internal in (False, True):
        r = await desk.client.post(
            comments_url(ticket),
            json={"body": "Manager here", "is_internal": internal},
            headers=desk.manager.headers,
        )
        problem(r, 403)
    r = await desk.client.get(comments_url(ticket), headers=desk.admin.headers)
    assert r.json() == []


async def test_no_replies_on_closed_or_rejected_tickets(desk: Desk) -> None:
    closed = await desk.file()
    assert (await desk.move(closed, "closed", desk.requester)).status_code == 200
    rejected = await desk.file()
    assert (await desk.move(rejected, "rejected", reason="Spam")).status_code == 200
    for ticket in (closed, rejected):
        for who in (desk.requester, desk.agent, desk.admin):
            r = await desk.client.post(
                comments_url(ticket), json={"body": "One more thing"}, headers=who.headers
            )
            problem(r, 422, "ticket_closed")
        # Staff may still leave an internal note on the record.
        await desk.comment(ticket, "Closing remark for the team.", internal=True)
        r = await desk.client.get(comments_url(ticket), headers=desk.requester.headers)
        assert r.json() == []


async def test_the_author_edits_within_the_window_and_revisions_are_kept(desk: Desk) -> None:
    ticket = await desk.file()
    reply = await desk.comment(ticket, "Try turning it off and on.")
    assert reply["edited_at"] is None
    r = await desk.client.patch(
        comments_url(ticket, reply),
        json={"body": "Try **unplugging** it."},
        headers=desk.agent.headers,
    )
    assert r.status_code == 200, r.text
    edited = r.json()
    assert edited["body"] == "Try **unplugging** it."
    assert "<strong>unplugging</strong>" in edited["body_html"]
    assert edited["edited_at"] is not None and edited["created_at"] == reply["created_at"]
    r = await desk.client.patch(
        comments_url(ticket, reply),
        json={"body": "Try unplugging it for 30 s."},
        headers=desk.agent.headers,
    )
    assert r.status_code == 200
    # An unchanged body makes no revision.
    r = await desk.client.patch(
        comments_url(ticket, reply),
        json={"body": "Try unplugging it for 30 s."},
        headers=desk.agent.headers,
    )
    assert r.status_code == 200
    for who in (desk.requester, desk.agent2, desk.manager):
        r = await desk.client.get(f"{comments_url(ticket, reply)}/revisions", headers=who.headers)
        assert r.status_code == 200, r.text
        revisions = r.json()
        assert [v["body"] for v in revisions] == [
            "Try turning it off and on.",
            "Try **unplugging** it.",
        ]
        assert {v["edited_by_id"] for v in revisions} == {str(desk.agent.user.id)}
    r = await desk.client.get(comments_url(ticket), headers=desk.requester.headers)
    assert [c["body"] for c in r.json()] == ["Try unplugging it for 30 s."]
    # The history has the old and the new body.
    updates = [e for e in await desk.history(ticket) if e["action"] == "comment.updated"]
    assert [(e["old_values"]["body"], e["new_values"]["body"]) for e in updates] == [
        ("Try turning it off and on.", "Try **unplugging** it."),
        ("Try **unplugging** it.", "Try unplugging it for 30 s."),
    ]
    assert {e["actor_id"] for e in updates} == {str(desk.agent.user.id)}
    # Requesters edit their own replies too.
    mine = await desk.comment(ticket, "It is the Dell.", desk.requester)
    r = await desk.client.patch(
        comments_url(ticket, mine),
        json={"body": "It is the Lenovo."},
        headers=desk.requester.headers,
    )
    assert r.status_code == 200 and r.json()["body"] == "It is the Lenovo."


async def test_only_the_author_edits(desk: Desk) -> None:
    ticket = await desk.file()
    reply = await desk.comment(ticket, "Original words.")
    mine = await desk.comment(ticket, "Requester words.", desk.requester)
    for who, comment in (
        (desk.agent2, reply),
        (desk.admin, reply),
        (desk.requester, reply),
        (desk.agent, mine),
    ):
        r = await desk.client.patch(
            comments_url(ticket, comment), json={"body": "Forged words."}, headers=who.headers
        )
        problem(r, 403, "not_author")
    r = await desk.client.get(comments_url(ticket), headers=desk.admin.headers)
    assert [c["body"] for c in r.json()] == ["Original words.", "Requester words."]
    r = await desk.client.get(
        f"{comments_url(ticket, reply)}/revisions", headers=desk.admin.headers
    )
    assert r.json() == []


async def test_edits_and_deletes_close_after_the_window(desk: Desk) -> None:
    ticket = await desk.file()
    old = await desk.comment(ticket, "Written a while ago.")
    await age_comment(desk, old, timedelta(minutes=16))
    r = await desk.client.patch(
        comments_url(ticket, old), json={"body": "Too late."}, headers=desk.agent.headers
    )
    problem(r, 422, "edit_window_passed")
    problem(await desk.client.delete(comments_url(ticket, old), headers=desk.agent.headers), 422)
    # A longer window set by the organization reopens it …
    await desk.set_settings(comment_edit_window_minutes=60)
    r = await desk.client.patch(
        comments_url(ticket, old), json={"body": "Still in time."}, headers=desk.agent.headers
    )
    assert r.status_code == 200, r.text
    # … and a window of 0 closes even a fresh comment.
    await desk.set_settings(comment_edit_window_minutes=0)
    fresh = await desk.comment(ticket, "Just written.", desk.requester)
    r = await desk.client.patch(
        comments_url(ticket, fresh), json={"body": "Changed."}, headers=desk.requester.headers
    )
    problem(r, 422, "edit_window_passed")
    r = await desk.client.delete(comments_url(ticket, fresh), headers=desk.requester.headers)
    problem(r, 422, "edit_window_passed")
    # Admins may still delete at any time.
    assert (
        await desk.client.delete(comments_url(ticket, fresh), headers=desk.admin.headers)
    ).status_code == 204
    r = await desk.client.get(comments_url(ticket), headers=desk.admin.headers)
    assert [c["body"] for c in r.json()] == ["Still in time."]
    r = await desk.client.patch(
        "/api/v1/organization",
        json={"settings": {"comment_edit_window_minutes": -1}},
        headers=desk.admin.headers,
    )
    problem(r, 422)


async def test_soft_delete_hides_the_comment_and_is_audited(desk: Desk) -> None:
    ticket = await desk.file()
    keep = await desk.comment(ticket, "Keep this reply.")
    gone = await desk.comment(ticket, "Mention the flibbertigibbet part.")
    note = await desk.comment(ticket, "Internal remark.", desk.agent2, internal=True)
    assert [t["id"] for t in await desk.search("flibbertigibbet")] == [ticket["id"]]
    # Not the author, not an admin: no.
    problem(await desk.client.delete(comments_url(ticket, gone), headers=desk.agent2.headers), 403)
    problem(
        await desk.client.delete(comments_url(ticket, gone), headers=desk.requester.headers), 403
    )
    problem(await desk.client.delete(comments_url(ticket, gone), headers=desk.manager.headers), 403)
    r = await desk.client.delete(comments_url(ticket, gone), headers=desk.agent.headers)
    assert r.status_code == 204, r.text
    r = await desk.client.delete(comments_url(ticket, note), headers=desk.admin.headers)
    assert r.status_code == 204, r.text
    for who in (desk.requester, desk.agent, desk.admin):
        r = await desk.client.get(comments_url(ticket), headers=who.headers)
        assert [c["id"] for c in r.json()] == [keep["id"]]
    # A deleted comment is gone for every route, and from search.
    problem(await desk.client.delete(comments_url(ticket, gone), headers=desk.admin.headers), 404)
    r = await desk.client.patch(
        comments_url(ticket, gone), json={"body": "Back?"}, headers=desk.agent.headers
    )
    problem(r, 404)
    r = await desk.client.get(f"{comments_url(ticket, gone)}/revisions", headers=desk.agent.headers)
    problem(r, 404)
    assert await desk.search("flibbertigibbet") == []
    # The history tells who deleted what.
    deleted = {
        e["actor_id"]: e for e in await desk.history(ticket) if e["action"] == "comment.deleted"
    }
    assert {e["new_values"]["ticket_id"] for e in deleted.values()} == {ticket["id"]}
    assert set(deleted) == {str(desk.agent.user.id), str(desk.admin.user.id)}
    by_agent = deleted[str(desk.agent.user.id)]
    assert by_agent["old_values"]["body"] == "Mention the flibbertigibbet part."
    assert by_agent["new_values"]["deleted_at"] is not None
    assert deleted[str(desk.admin.user.id)]["old_values"]["is_internal"] is True


async def test_mentions_record_staff_of_this_organization_only(
    desk: Desk, other_org: Any, make_user: MakeUser, login: Login
) -> None:
    outsider = await make_user(
        other_org, Role.AGENT, email=f"outsider-{uuid.uuid4().hex[:6]}@example.com"
    )
    ticket = await desk.file()
    body = (
        f"Hi @{desk.agent2.user.email} and @{desk.admin.user.email.upper()}, "
        f"please check with @{desk.manager.user.email}, @{desk.requester.user.email}, "
        f"@nobody-{uuid.uuid4().hex[:6]}@example.com and @{outsider.email}. "
        f"Plain {desk.agent.user.email} without an at sign is not a mention."
    )
    comment = await desk.comment(ticket, body, internal=True)
    assert set(comment["mentions"]) == {str(desk.agent2.user.id), str(desk.admin.user.id)}
    r = await desk.client.get(comments_url(ticket), headers=desk.agent.headers)
    assert set(r.json()[0]["mentions"]) == set(comment["mentions"])
    created = [e for e in await desk.history(ticket) if e["action"] == "comment.created"]
    assert set(created[0]["new_values"]["mentions"]) == set(comment["mentions"])
    # An edit recomputes the mentions.
    r = await desk.client.patch(
        comments_url(ticket, comment),
        json={"body": f"Only @{desk.agent.user.email} now."},
        headers=desk.agent.headers,
    )
    assert r.status_code == 200 and r.json()["mentions"] == [str(desk.agent.user.id)]
    # Requesters' comments mention nobody.
    reply = await desk.comment(ticket, f"Thanks @{desk.agent.user.email}!", desk.requester)
    assert reply["mentions"] == []


async def test_comment_bodies_are_rendered_harmlessly(desk: Desk) -> None:
    ticket = await desk.file()
    body = (
        "<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n"
        '[click](javascript:alert(3))\n\n<a href="javascript:alert(4)">x</a>\n\n'
        "**bold** and [docs](https://example.com/docs)"
    )
    for who in (desk.agent, desk.requester):
        comment = await desk.comment(ticket, body, who)
        assert comment["body"] == body
        assert_safe_html(comment["body_html"])
        assert "<strong>bold</strong>" in comment["body_html"]
        assert '<a href="https://example.com/docs"' in comment["body_html"]
    r = await desk.client.patch(
        comments_url(ticket, comment),
        json={"body": "Edited <script>alert(5)</script> [x](javascript:alert(6))"},
        headers=desk.requester.headers,
    )
    assert r.status_code == 200
    assert_safe_html(r.json()["body_html"])
    r = await desk.client.get(comments_url(ticket), headers=desk.requester.headers)
    for c in r.json():
        assert_safe_html(c["body_html"])


async def test_a_comment_of_one_ticket_is_not_reachable_through_another(desk: Desk) -> None:
    first = await desk.file()
    second = await desk.file()
    reply = await desk.comment(first, "Belongs to the first ticket.")
    for method, url, body in (
        ("PATCH", comments_url(second, reply), {"body": "moved"}),
        ("DELETE", comments_url(second, reply), None),
        ("GET", f"{comments_url(second, reply)}/revisions", None),
    ):
        r = await desk.client.request(method, url, json=body, headers=desk.agent.headers)
        problem(r, 404)
    r = await desk.client.get(comments_url(first), headers=desk.agent.headers)
    assert [c["body"] for c in r.json()] == ["Belongs to the first ticket."]
    assert json.loads(r.text)[0]["ticket_id"] == first["id"]


async def test_comment_timestamps_are_ordered(desk: Desk) -> None:
    ticket = await desk.file()
    bodies = [f"Reply number {i}" for i in range(5)]
    for i, body in enumerate(bodies):
        await desk.comment(ticket, body, desk.agent if i % 2 else desk.requester)
    r = await desk.client.get(comments_url(ticket), headers=desk.requester.headers)
    assert [c["body"] for c in r.json()] == bodies
    times = [parse_time(c["created_at"]) for c in r.json()]
    assert times == sorted(times)
