"""The ASGI application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import swagger_ui_bundle
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from servicedesk import __version__, web
from servicedesk.accounts import api as accounts_api
from servicedesk.accounts import user_cache
from servicedesk.audit import api as audit_api
from servicedesk.config import Settings, get_settings
from servicedesk.core.middleware import RequestPipelineMiddleware
from servicedesk.core.problems import install_problem_handlers, problem
from servicedesk.core.runtime import Runtime, get_runtime
from servicedesk.jobs import api as jobs_api
from servicedesk.live import api as live_api
from servicedesk.live import service as live_service
from servicedesk.notifications import api as notifications_api
from servicedesk.tenancy import api as tenancy_api
from servicedesk.tenancy import service as tenancy_service
from servicedesk.tickets import api as tickets_api
from servicedesk.tickets import attachments_api
from servicedesk.tickets import bulk_api as tickets_bulk_api
from servicedesk.tickets import categories as tickets_categories
from servicedesk.tickets import reads as tickets_reads


def create_app(settings: Settings | None = None, *, database_url: str | None = None) -> FastAPI:
    """Build the app for a database URL (the CLI starts the embedded server and passes it)."""
    settings = settings or get_settings()
    url = database_url or settings.database_url
    if not url:
        raise RuntimeError("create_app needs a database URL (servicedesk serve provides one)")
    runtime = Runtime.build(settings, url)
    tenancy_service.tenant_cache.ttl = settings.tenant_cache_seconds
    user_cache.user_cache.ttl = settings.user_cache_seconds
    tickets_categories.category_cache.ttl = settings.category_cache_seconds
    tickets_reads.ticket_cache.ttl = settings.ticket_cache_seconds

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Fewer, cheaper cyclic-GC passes: with CPython's defaults a full collection of the
        # server's heap runs every few hundred requests and stalls every request in flight
        # (benchmarks/README.md, "GC thresholds").
        gc.set_threshold(*settings.gc_thresholds)
        async with live_service.running(runtime):  # live fan-out and shared cache (docs/live.md)
            yield
        await runtime.db.dispose()

    app = FastAPI(
        title="Servicedesk API",
        version=__version__,
        description="Multi-tenant help desk. Errors are RFC 9457 problem+json documents.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.add_middleware(RequestPipelineMiddleware, hsts=settings.https)
    install_problem_handlers(app, html_errors=web.render_error_page)

    # The busiest routers first: a request is matched against the routes of every router
    # before its own (twice for its own), which was a tenth of a cached GET's time with the
    # ticket routes after the account ones.
    for router in (
        tickets_bulk_api.router,  # before tickets_api.router: /bulk and /import are not ids
        tickets_api.router,
        tickets_api.categories_router,
        tickets_api.views_router,
        attachments_api.router,
        attachments_api.download_router,
        accounts_api.auth_router,
        accounts_api.me_router,
        accounts_api.users_router,
        accounts_api.departments_router,
        accounts_api.security_router,
        audit_api.router,
        tenancy_api.router,
        tenancy_api.platform_router,
        jobs_api.router,
        jobs_api.platform_router,
        notifications_api.router,
        live_api.router,
    ):
        app.include_router(router)

    _mount_docs(app)
    _mount_operations(app)
    web.install(app)  # the pages: portal at /, sign-in, account (docs/ui.md)

    return app


def _mount_docs(app: FastAPI) -> None:
    app.mount(
        "/api/docs/static",
        StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
        name="swagger-static",
    )

    @app.get("/api/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/api/v1/openapi.json",
            title="Servicedesk API",
            swagger_js_url="/api/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/api/docs/static/swagger-ui.css",
            swagger_favicon_url="/api/docs/static/favicon-32x32.png",
        )


def _mount_operations(app: FastAPI) -> None:
    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["operations"], summary="Readiness: the database answers")
    async def readyz(request: Request) -> Response:
        runtime: Runtime = get_runtime(request)
        try:
            async with runtime.db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:  # any failure means not ready
            return problem(503, code="not_ready", detail="The database is not reachable.")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
