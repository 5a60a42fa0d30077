"""ASGI entry point for multi-process serving (`uvicorn servicedesk.asgi:app`).

Needs DATABASE_URL: the embedded server is started by `servicedesk serve` only.
"""

from servicedesk.app import create_app
from servicedesk.config import get_settings
from servicedesk.core.logging import configure_logging

configure_logging(get_settings().log_level, json=get_settings().log_json)
app = create_app()
