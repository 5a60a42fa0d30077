"""Where the UI's files live, and cache-busting URLs for the static ones.

Our own CSS and JS are hand-written files in `static/`. Third-party browser code (htmx) comes
from the npm registry at install time: `make install` runs `npm ci` and copies
`node_modules/htmx.org/dist/htmx.min.js` to `static/vendor/` (git-ignored). Without it the
pages still work as plain forms; only the partial updates are missing.
"""

from __future__ import annotations

import hashlib
import logging
from functools import cache
from pathlib import Path

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
