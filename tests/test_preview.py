"""`POST /preview` over HTTP: the Markdown preview of the editors renders exactly what a stored
comment or description shows (the same function), neutralises markup the same way, and is only
for signed-in users of the organization, with the CSRF token, within the comment length limit
and the per-user rate limit."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from servicedesk.core.text import render_markdown
from servicedesk.models import Organization, Role
from servicedesk.web.preview import MAX_CHARS, rate_key
from tests.conftest import PASSWORD, Session, client_for
from tests.ticket_helpers import (  # noqa: F401
    API,
    TICKETS,
    Desk,
    assert_safe_html,
    desk_fixture,
)

XSS = [
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=1">',
    "[click me](javascript:alert(1))",
    "[encoded](JaVaScRiPt&#58;alert(1))",
    '<a href="javascript:alert(1)">raw link</a>',
    '<iframe src="https://evil.example"></iframe><b onclick="x()">raw bold</b>',
    "![pixel](https://evil.example/p.png)",
    "<svg/onload=alert(1)>",
]


@asynccontextmanager
async def browser_for(app: object, who: Session) -> AsyncIterator[httpx.AsyncClient]:
    """A client with the cookie session of `who` (as the browser has it after signing in)."""
    async with client_for(app) as c:
        r = await c.post(
            f"{API}/auth/login",
            json={"email": who.user.email, "password": PASSWORD},
            headers={"X-Tenant-ID": who.org.slug},
        )
        assert r.status_code == 200, r.text
        assert c.cookies.get("sd_csrf")
        yield c


def preview_url(org: Organization) -> str:
    return f"/t/{org.slug}/preview"


async def preview(
    c: httpx.AsyncClient, org: Organization, text: str, *, header: bool = True
) -> httpx.Response:
    """Post like app.js does: multipart, the token as a field and in X-CSRF-Token."""
    token = c.cookies["sd_csrf"]
    return await c.post(
        preview_url(org),
        files={"csrf_token": (None, token), "text": (None, text)},
        headers={"X-CSRF-Token": token} if header else {},
    )


async def test_renders_bold_lists_and_links(app: object, desk: Desk) -> None:
    async with browser_for(app, desk.agent) as c:
        r = await preview(
            c,
            desk.org,
            "Try **another port**.\n\n- first\n- second\n\n1. one\n\n"
            "See [the guide](https://example.com/guide) and `code`.",
        )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store"
    body = r.text
    assert "<strong>another port</strong>" in body
    assert "<ul>\n<li>first</li>\n<li>second</li>\n</ul>" in body
    assert "<ol>" in body and "<li>one</li>" in body
    assert (
        '<a href="https://example.com/guide" rel="noopener noreferrer nofollow">the guide</a>'
        in body
    )
    assert "<code>code</code>" in body
    # A fragment for the editor's preview area, not a page.
    assert "<html" not in body and "<body" not in body


async def test_a_requester_may_preview_too(app: object, desk: Desk) -> None:
    async with browser_for(app, desk.requester) as c:
        r = await preview(c, desk.org, "*it works*")
    assert r.status_code == 200, r.text
    assert r.text.strip() == "<p><em>it works</em></p>"


@pytest.mark.parametrize("payload", XSS)
async def test_markup_is_neutralised_exactly_as_in_a_stored_comment(
    app: object, desk: Desk, payload: str
) -> None:
    text = f"Hello **there** {payload}\n\n{payload}"
    ticket = await desk.file()
    r = await desk.client.post(
        f"{TICKETS}/{ticket['id']}/comments", json={"body": text}, headers=desk.agent.headers
    )
    assert r.status_code == 201, r.text
    stored = r.json()["body_html"]
    async with browser_for(app, desk.agent) as c:
        shown = await preview(c, desk.org, text)
    assert shown.status_code == 200, shown.text
    assert shown.text.strip() == stored.strip() == render_markdown(text).strip()
    assert_safe_html(shown.text)
    assert "<strong>there</strong>" in shown.text


async def test_the_description_preview_matches_the_filed_ticket(app: object, desk: Desk) -> None:
    description = "Broken since **Monday**:\n\n" + "\n\n".join(XSS)
    ticket = await desk.file(description=description)
    async with browser_for(app, desk.requester) as c:
        r = await preview(c, desk.org, description)
    assert r.status_code == 200, r.text
    assert r.text.strip() == ticket["description_html"].strip()
    assert_safe_html(r.text)


async def test_raw_html_comes_back_as_text(app: object, desk: Desk) -> None:
    async with browser_for(app, desk.agent) as c:
        r = await preview(c, desk.org, "<script>alert(1)</script>")
    assert r.status_code == 200, r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert_safe_html(r.text)


async def test_empty_text_has_nothing_to_preview(app: object, desk: Desk) -> None:
    async with browser_for(app, desk.agent) as c:
        for text in ("", "   \n\t  "):
            r = await preview(c, desk.org, text)
            assert r.status_code == 200, r.text
            assert "Nothing to preview." in r.text
        # No text field at all counts as empty.
        token = c.cookies["sd_csrf"]
        r = await c.post(
            preview_url(desk.org), data={"csrf_token": token}, headers={"X-CSRF-Token": token}
        )
        assert r.status_code == 200, r.text
        assert "Nothing to preview." in r.text


async def test_too_long_is_a_422_with_a_clear_message(app: object, desk: Desk) -> None:
    async with browser_for(app, desk.agent) as c:
        r = await preview(c, desk.org, "x" * MAX_CHARS)
        assert r.status_code == 200, r.text
        r = await preview(c, desk.org, "x" * (MAX_CHARS + 1))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("text/html")
    message = html.unescape(r.text)
    assert "too long to preview: 50,001 characters, at most 50,000 are allowed" in message
    assert "md-preview-error" in r.text


async def test_without_a_session_there_is_no_preview(app: object, desk: Desk) -> None:
    async with client_for(app) as c:
        # No cookies at all: sent to sign in, the body is never read.
        r = await c.post(preview_url(desk.org), data={"text": "**hi**"})
        assert r.status_code == 303
        assert r.headers["location"] == f"/t/{desk.org.slug}/login"
        # A CSRF cookie and token but no session: the same.
        c.cookies.set("sd_csrf", "abc123")
        r = await c.post(
            preview_url(desk.org),
            data={"text": "**hi**", "csrf_token": "abc123"},
            headers={"X-CSRF-Token": "abc123"},
        )
        assert r.status_code == 303
        assert "<strong>" not in r.text
        # htmx-style requests get HX-Redirect instead of a redirect.
        r = await c.post(
            preview_url(desk.org), data={"text": "**hi**"}, headers={"HX-Request": "true"}
        )
        assert r.status_code == 204
        assert r.headers["hx-redirect"] == f"/t/{desk.org.slug}/login"


async def test_a_bearer_token_alone_is_not_a_page_session(app: object, desk: Desk) -> None:
    async with client_for(app) as c:
        r = await c.post(preview_url(desk.org), data={"text": "**hi**"}, headers=desk.agent.headers)
    assert r.status_code == 303
    assert "<strong>" not in r.text


async def test_without_the_csrf_token_it_is_refused(app: object, desk: Desk) -> None:
    async with browser_for(app, desk.agent) as c:
        r = await c.post(preview_url(desk.org), files={"text": (None, "**hi**")})
        assert r.status_code == 403, r.text
        assert "<strong>hi</strong>" not in r.text
        r = await c.post(
            preview_url(desk.org),
            files={"text": (None, "**hi**"), "csrf_token": (None, "wrong")},
            headers={"X-CSRF-Token": "wrong"},
        )
        assert r.status_code == 403, r.text
        assert "<strong>hi</strong>" not in r.text
        # The field alone (as a plain form posts it) is enough; so is the header alone.
        token = c.cookies["sd_csrf"]
        r = await c.post(preview_url(desk.org), data={"text": "**hi**", "csrf_token": token})
        assert r.status_code == 200, r.text
        r = await preview(c, desk.org, "**hi**", header=True)
        assert r.status_code == 200, r.text


async def test_only_post(app: object, desk: Desk) -> None:
    async with browser_for(app, desk.agent) as c:
        r = await c.get(preview_url(desk.org) + "?text=**hi**")
    assert r.status_code == 405


async def test_an_unknown_organization_is_a_404(app: object, desk: Desk) -> None:
    async with browser_for(app, desk.agent) as c:
        token = c.cookies["sd_csrf"]
        r = await c.post(
            "/t/no-such-desk-here/preview",
            files={"csrf_token": (None, token), "text": (None, "**hi**")},
            headers={"X-CSRF-Token": token},
        )
    assert r.status_code == 404, r.text
    assert "<strong>hi</strong>" not in r.text


async def test_another_organizations_session_gets_no_preview(
    app: object, desk: Desk, other_org: Organization, make_user: Any, login: Any
) -> None:
    """A session is good in its own organization only: elsewhere it is no session at all (as on
    every page), so the preview sends the visitor to that organization's sign-in."""
    stranger = await login(await make_user(other_org, Role.AGENT), other_org)
    async with browser_for(app, stranger) as c:
        assert (await preview(c, other_org, "**mine**")).status_code == 200
        r = await preview(c, desk.org, "**hi**")
    assert r.status_code == 303
    assert r.headers["location"] == f"/t/{desk.org.slug}/login"
    assert "<strong>hi</strong>" not in r.text


async def test_rate_limited_per_user(app: object, desk: Desk) -> None:
    runtime = desk.runtime
    limit = runtime.settings.rate_preview_user
    count = int(limit.split("/")[0])
    for _ in range(count):
        await runtime.limiter.hit(limit, *rate_key(desk.agent.user.id, desk.org.id))
    async with browser_for(app, desk.agent) as c:
        r = await preview(c, desk.org, "**hi**")
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) >= 1
    assert "Too many previews" in r.text
    # Someone else's previews are not counted against this user.
    async with browser_for(app, desk.agent2) as c:
        assert (await preview(c, desk.org, "**hi**")).status_code == 200
