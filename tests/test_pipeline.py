"""The request pipeline: request ids, timing, security headers, problem+json, docs, metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter

from servicedesk.app import create_app
from tests.conftest import Session, client_for, test_settings


async def test_every_response_has_request_id_and_timing(client: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/api/v1/me", "/no/such/page"):
        r = await client.get(path)
        assert len(r.headers["x-request-id"]) >= 8
        assert r.headers["x-response-time"].endswith("ms")


async def test_incoming_request_id_is_kept_when_sane(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz", headers={"X-Request-ID": "abcdef12-trace"})
    assert r.headers["x-request-id"] == "abcdef12-trace"
    r = await client.get("/healthz", headers={"X-Request-ID": "<script>alert(1)</script>"})
    assert r.headers["x-request-id"] != "<script>alert(1)</script>"


async def test_security_headers(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    # HSTS only when served over HTTPS (SERVICEDESK_HTTPS).
    assert "strict-transport-security" not in r.headers


@pytest.fixture
async def https_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(test_settings(SERVICEDESK_HTTPS=True), database_url=database_url)
    async with client_for(app) as c:
        yield c
    await app.state.runtime.db.dispose()


async def test_hsts_when_https(https_client: httpx.AsyncClient) -> None:
    r = await https_client.get("/healthz")
    assert r.headers["strict-transport-security"].startswith("max-age=")


async def test_unknown_route_is_problem_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "urn:servicedesk:problem:not_found"
    assert body["status"] == 404
    assert body["request_id"] == r.headers["x-request-id"]


async def test_method_not_allowed_is_problem_json(client: httpx.AsyncClient) -> None:
    r = await client.put("/healthz")
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/problem+json"


@pytest.fixture
async def failing_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(test_settings(), database_url=database_url)
    router = APIRouter()

    @router.get("/api/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    @router.get("/boom")
    async def page_boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    app.include_router(router)
    async with client_for(app) as c:
        yield c
    await app.state.runtime.db.dispose()


async def test_500_reveals_only_the_request_id(failing_client: httpx.AsyncClient) -> None:
    r = await failing_client.get("/api/boom")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["request_id"] == r.headers["x-request-id"]
    assert "hunter2" not in r.text and "RuntimeError" not in r.text


async def test_500_of_a_page_is_an_html_page_with_the_request_id(
    failing_client: httpx.AsyncClient,
) -> None:
    r = await failing_client.get("/boom")
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["x-request-id"] in r.text
    assert "hunter2" not in r.text and "RuntimeError" not in r.text


async def test_openapi_documents_the_api(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    paths = spec["paths"]
    for path in (
        "/api/v1/auth/login",
        "/api/v1/auth/register",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/auth/mfa/verify",
        "/api/v1/me",
        "/api/v1/me/2fa/setup",
        "/api/v1/users",
        "/api/v1/users/{user_id}/approve",
        "/api/v1/departments",
        "/api/v1/audit-log",
        "/api/v1/organization",
    ):
        assert path in paths, path
    for path, operations in paths.items():
        for method, op in operations.items():
            assert op.get("summary"), f"{method.upper()} {path} has no summary"


async def test_swagger_ui_is_served_without_cdn(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/docs")
    assert r.status_code == 200
    assert "cdn" not in r.text.lower()
    assert "/api/docs/static/swagger-ui-bundle.js" in r.text
    js = await client.get("/api/docs/static/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000


async def test_metrics_and_readiness(client: httpx.AsyncClient, admin: Session) -> None:
    await client.get("/api/v1/me", headers=admin.headers)
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert "servicedesk_http_requests_total" in r.text
    assert "servicedesk_cache_hits_total" in r.text
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"


async def test_readyz_fails_when_database_is_gone() -> None:
    app = create_app(test_settings(), database_url="postgresql://nobody@127.0.0.1:1/none")
    async with client_for(app) as c:
        r = await c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["code"] == "not_ready"
    await app.state.runtime.db.dispose()


async def test_own_js_and_css_are_served_minified_and_cacheable(client: httpx.AsyncClient) -> None:
    from servicedesk.web.assets import STATIC_DIR, static_url

    for name, media in (("app.js", "text/javascript"), ("app.css", "text/css")):
        source = (STATIC_DIR / name).read_bytes()
        url = static_url(name)
        assert "?v=" in url
        r = await client.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith(media)
        assert len(r.content) < 0.9 * len(source), "comments and whitespace are removed"
        assert b"/*" not in r.content.replace(b"*/*", b"")
        assert "immutable" in r.headers["cache-control"]
        etag = r.headers["etag"]
        again = await client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and not again.content
        plain = await client.get(f"/static/{name}")
        assert plain.headers["cache-control"] == "no-cache" and plain.content == r.content
    vendor = await client.get("/static/favicon.svg?v=1")
    assert vendor.status_code == 200 and "immutable" in vendor.headers["cache-control"]
    assert (await client.get("/static/../config.py")).status_code == 404


async def test_server_sets_the_configured_gc_thresholds(database_url: str) -> None:
    import gc

    from pydantic import ValidationError

    before = gc.get_threshold()
    served = create_app(
        test_settings(SERVICEDESK_GC_THRESHOLD="40000, 15, 9"), database_url=database_url
    )
    try:
        async with served.router.lifespan_context(served):
            assert gc.get_threshold() == (40000, 15, 9)
    finally:
        gc.set_threshold(*before)
        await served.state.runtime.db.dispose()
    assert test_settings().gc_thresholds == (50000, 20, 10)
    for bad in ("700,10", "0,10,10", "a,b,c", "700,10,10,10", "-1,10,10"):
        with pytest.raises(ValidationError, match="three positive integers"):
            test_settings(SERVICEDESK_GC_THRESHOLD=bad)
