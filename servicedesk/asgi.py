"""ASGI entry point for multi-process serving (`uvicorn servicedesk.asgi:app`).

Needs DATABASE_URL: the embedded server is started by `servicedesk serve` only.
"""

from servicedesk.app import create_app

app = create_app()
