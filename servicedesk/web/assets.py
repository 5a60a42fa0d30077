"""Where the UI's files live, cache-busting URLs for the static ones, and their serving.

Our own CSS and JS are hand-written files in `static/`, served minified (comments and
whitespace removed by rjsmin/rcssmin, computed once per file version, in memory), so the source
stays readable and a page ships less. Third-party browser code (htmx) comes
from the npm registry at install time: `make install` runs `npm ci` and copies
`node_modules/htmx.org/dist/htmx.min.js` to `static/vendor/` (git-ignored). Without it the
pages still work as plain forms; only the partial updates are missing.
"""

from __future__ import annotations

import hashlib
import logging
from functools import cache
from pathlib import Path

import rcssmin  # type: ignore[import-untyped]
import rjsmin  # type: ignore[import-untyped]
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
TEMPLATES_DIR = WEB_DIR / "templates"
HTMX_FILE = "vendor/htmx.min.js"
STATIC_PREFIX = "/static"


@cache
def _fingerprint(name: str, mtime_ns: int) -> str:
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]


def static_url(name: str) -> str:
    """`/static/<name>?v=<content hash>`: browsers may cache it for as long as it is unchanged."""
    path = STATIC_DIR / name
    try:
        version = _fingerprint(name, path.stat().st_mtime_ns)
    except FileNotFoundError:
        return f"{STATIC_PREFIX}/{name}"
    return f"{STATIC_PREFIX}/{name}?v={version}"


@cache
def _warn_missing_htmx() -> None:
    log.warning("static/%s is missing: run `make install` (npm ci) for partial updates", HTMX_FILE)


def htmx_available() -> bool:
    if (STATIC_DIR / HTMX_FILE).is_file():
        return True
    _warn_missing_htmx()
    return False


MINIFIED = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
YEAR = 365 * 24 * 3600


@cache
def _minified(name: str, mtime_ns: int) -> tuple[bytes, str]:
    source = (STATIC_DIR / name).read_text(encoding="utf-8")
    text = rjsmin.jsmin(source) if name.endswith(".js") else rcssmin.cssmin(source)
    body = text.encode()
    return body, hashlib.sha256(body).hexdigest()[:16]


def minified(name: str) -> tuple[bytes, str]:
    """The minified body of one of our files and its ETag, for its current version."""
    return _minified(name, (STATIC_DIR / name).stat().st_mtime_ns)


class Static(StaticFiles):
    """`/static`: our JS and CSS minified; every file cacheable for a year when asked for by
    its fingerprinted URL (`?v=`), else revalidated."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        versioned = b"v=" in scope.get("query_string", b"")
        cache_control = f"public, max-age={YEAR}, immutable" if versioned else "no-cache"
        if path in MINIFIED and scope["method"] in ("GET", "HEAD"):
            body, etag = minified(path)
            headers = {"ETag": f'"{etag}"', "Cache-Control": cache_control}
            if _etag_matches(scope, etag):
                return Response(status_code=304, headers=headers)
            return Response(body, media_type=MINIFIED[path], headers=headers)
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = cache_control
        return response


def _etag_matches(scope: Scope, etag: str) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"if-none-match":
            return f'"{etag}"'.encode() in value
    return False
