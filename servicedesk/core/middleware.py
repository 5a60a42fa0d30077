"""The outer request pipeline as one pure-ASGI middleware (cheaper than a stack of them).

For every HTTP request: request id, timing, security headers, the `/t/{slug}/` tenant path
prefix, one structured access-log line and Prometheus metrics.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicedesk.core.context import RequestContext, reset_request_context, set_request_context
from servicedesk.core.problems import internal_error_response

log = logging.getLogger("servicedesk.access")

REQUESTS = Counter("servicedesk_http_requests_total", "HTTP requests", ["method", "status"])
LATENCY = Histogram(
    "servicedesk_http_request_seconds",
    "HTTP request latency",
    ["method"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

_TENANT_PATH = re.compile(r"^/t/([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(/.*)?$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI boots from an inline script and inline styles.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; object-src 'none'; frame-ancestors 'none'"
)


class RequestPipelineMiddleware:
    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        incoming = headers.get("x-request-id", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        client = scope.get("client")
        ip = client[0] if client else None
        token = set_request_context(
            RequestContext(request_id=request_id, ip=ip, user_agent=headers.get("user-agent"))
        )

        path: str = scope["path"]
        match = _TENANT_PATH.match(path)
        if match:
            scope = dict(scope)
            scope["path"] = match.group(2) or "/"
            scope["raw_path"] = scope["path"].encode()
            state: dict[str, Any] = dict(scope.get("state") or {})
            state["tenant_path_slug"] = match.group(1)
            scope["state"] = state
            path = scope["path"]
        csp = DOCS_CSP if path.startswith("/api/docs") else CSP
        status_holder = {"status": 500, "started": 0}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = 1
                elapsed_ms = (time.perf_counter() - started) * 1000
                extra = [
                    (b"x-request-id", request_id.encode()),
                    (b"x-response-time", f"{elapsed_ms:.2f}ms".encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"strict-origin-when-cross-origin"),
                    (b"cross-origin-opener-policy", b"same-origin"),
                    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
                    (b"content-security-policy", csp.encode()),
                ]
                if self.hsts:
                    extra.append(
                        (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
                    )
                existing = list(message.get("headers", []))
                # A route that set its own (stricter) header keeps it, e.g. file downloads.
                present = {name.lower() for name, _ in existing}
                message["headers"] = existing + [h for h in extra if h[0] not in present]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error", extra={"path": path})
            if status_holder["started"]:
                raise
            content_type, body = internal_error_response(scope)
            await send_wrapper(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", content_type),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send_wrapper({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"]
            status = status_holder["status"]
            REQUESTS.labels(method, str(status)).inc()
            LATENCY.labels(method).observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "ip": ip,
                },
            )
            reset_request_context(token)
