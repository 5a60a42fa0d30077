"""Markdown preview of the reply, note and description editors: `POST /preview`.

The fragment is rendered by `core.text.render_markdown`, the function that renders a comment
or a description when it is stored, so the preview shows exactly what the conversation will
show (same Markdown, same sanitising allow-list); there is no second pipeline.

Only signed-in users of the organization may preview (`PageUser`); the form's CSRF token is
checked before the transaction opens (`forms.read_public_form`: no files, a small body). Each
user has a rate limit (`SERVICEDESK_RATE_PREVIEW_USER`). The answers are HTML fragments for the
editor's preview area: 200 with the rendered text (or "Nothing to preview"), 422 when the text
is longer than a comment may be, 429 when previewing too often.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from servicedesk.accounts.auth import ACCESS_COOKIE, REFRESH_COOKIE
from servicedesk.core.errors import RateLimited
from servicedesk.core.runtime import get_runtime
from servicedesk.core.text import render_markdown
from servicedesk.web.forms import PostedForm, read_public_form
from servicedesk.web.session import LoginRequired, PageUser
from servicedesk.web.templating import render

router = APIRouter(include_in_schema=False)

MAX_CHARS = 50_000
"""The longest text a comment or a description may have (`tickets.schemas`), so the longest
worth previewing."""


async def _read_preview_form(request: Request) -> PostedForm:
    """The posted text, CSRF-checked; only a request with a session cookie gets its body read."""
    if not (request.cookies.get(ACCESS_COOKIE) or request.cookies.get(REFRESH_COOKIE)):
        raise LoginRequired("Sign in to continue.")
    return await read_public_form(request)


PreviewForm = Annotated[PostedForm, Depends(_read_preview_form)]


def rate_key(user_id: object, organization_id: object) -> tuple[str, str, str]:
    """The limiter's identifiers of one user's previews."""
    return ("preview", str(organization_id), str(user_id))


@router.post("/preview")
async def preview(request: Request, form: PreviewForm, user: PageUser) -> Response:
    """The text as the conversation will show it, as an HTML fragment."""
    runtime = get_runtime(request)
    try:
        await runtime.limiter.hit(
            runtime.settings.rate_preview_user, *rate_key(user.id, user.organization_id)
        )
    except RateLimited as exc:
        return _message(
            request,
            f"Too many previews in a short time; try again in {exc.extra['retry_after']} s.",
            status_code=429,
            headers={"Retry-After": str(exc.extra["retry_after"])},
        )
    text = form.get("text")
    if len(text) > MAX_CHARS:
        return _message(
            request,
            f"The text is too long to preview: {len(text):,} characters, "
            f"at most {MAX_CHARS:,} are allowed.",
            status_code=422,
        )
    if not text.strip():
        return _message(request, "Nothing to preview.", muted=True)
    return render(request, "_preview.html", {"rendered": render_markdown(text)})


def _message(
    request: Request,
    message: str,
    *,
    status_code: int = 200,
    muted: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "_preview.html",
        {"rendered": None, "message": message, "muted": muted},
        status_code=status_code,
        headers=headers,
    )
