"""The server-rendered UI: one more adapter over the same services as the API.

`install(app)` mounts the static files, adds the page routers and the sign-in redirect.
Pages live under `/` (the requester portal), with `/agent` and `/admin` to come; an
organization is named by its subdomain or a `/t/{slug}/` path prefix, which links keep.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

from servicedesk.web import (
    account_pages,
    admin,
    admin_categories,
    admin_ops,
    agent,
    agent_properties,
    agent_views,
    assets,
    auth_pages,
    live_pages,
    notifications_pages,
    portal,
    preview,
)
from servicedesk.web.errors import render_error_page
from servicedesk.web.session import LoginRequired, login_redirect

__all__ = ["install", "render_error_page"]


async def _login_required(request: Request, exc: Exception) -> Response:
    return login_redirect(request)


def install(app: FastAPI) -> None:
    app.mount(
        assets.STATIC_PREFIX,
        assets.Static(directory=assets.STATIC_DIR, check_dir=True),
        name="static",
    )
    for router in (auth_pages.router, account_pages.router, portal.router):
        app.include_router(router)
    for router in (admin.router, admin_categories.router, admin_ops.router):
        app.include_router(router)
    app.include_router(live_pages.router)
    app.include_router(agent.router)
    app.include_router(agent_views.router)
    app.include_router(agent_properties.router)
    app.include_router(notifications_pages.router)
    app.include_router(preview.router)
    app.add_exception_handler(LoginRequired, _login_required)
