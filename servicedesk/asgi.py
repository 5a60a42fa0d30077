"""ASGI entry point for multi-process serving (`uvicorn servicedesk.asgi:app`).

Needs DATABASE_URL: `servicedesk serve --workers N` sets it to its embedded server. The job
system runs in this process when SERVICEDESK_INPROCESS_WORKER is true (serve sets it for the
embedded default; with an external database, run `servicedesk worker` instead).
"""

from servicedesk.app import create_app
from servicedesk.config import get_settings
from servicedesk.core.logging import configure_logging

settings = get_settings()
configure_logging(settings.log_level, json=settings.log_json)
app = create_app(settings)
if settings.runs_inprocess_worker:
    from servicedesk.core.job_runner import attach_to_app

    attach_to_app(app)
