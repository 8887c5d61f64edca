"""Opening the results database: URL resolution, SQLite tuning, migrations.

Any SQLAlchemy URL works (SQLite by default, PostgreSQL for a team). The schema
is brought to the newest Alembic revision on open, so a database written by an
older segbench is upgraded in place rather than misread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from segbench.errors import UserError

DEFAULT_URL = "sqlite:///results/segbench.db"
#: The newest migration; checked before importing Alembic so read-only commands stay fast.
HEAD_REVISION = "0003"
MIGRATIONS = Path(__file__).with_name("migrations")


def resolve_url(url: str | None) -> str:
    """``--db`` if given, else ``$SEGBENCH_DB``, else SQLite under ``results/``."""
    return url or os.environ.get("SEGBENCH_DB") or DEFAULT_URL


class Database:
    """An engine plus a session factory, migrated to head."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = resolve_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError:
            raise UserError(
                f"--db: '{self.url}' is not a database URL (e.g. sqlite:///results/segbench.db)"
            ) from None
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            path = Path(parsed.database)
            if not path.exists():
                if not create:
                    raise UserError(f"no results database at {path} (run a suite first, or pass --db URL)")
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise UserError(f"cannot create results database {path}: {exc}") from None
        try:
            self.engine = _make_engine(self.url, self.is_sqlite)
        except (ArgumentError, ImportError) as exc:  # unknown dialect, or its driver is not installed
            raise UserError(f"--db: cannot use '{self.display_url}': {exc}") from None
        try:
            self._migrate()
        except DBAPIError as exc:  # unreachable server, refused login, a file that is not a database
            raise UserError(f"cannot open results database {self.display_url}: {exc.orig}") from None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def display_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        with self.sessions() as session, session.begin():
            yield session

    def _revision(self) -> str | None:
        with self.engine.connect() as conn:
            if "alembic_version" not in set(inspect(conn).get_table_names()):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def _migrate(self) -> None:
        if self._revision() == HEAD_REVISION:
            return
        with self._migration_lock():
            self._migrate_locked()

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """One process migrates at a time: parallel runs or CI shards may open a new database at once.

        SQLite commits DDL as it goes, so a second process would see half a schema;
        a lock file beside the database (PostgreSQL: an advisory lock) serialises them.
        """
        parsed = make_url(self.url)
        if self.is_sqlite and parsed.database and parsed.database != ":memory:":
            import fcntl

            with open(f"{parsed.database}.migrate.lock", "w") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                yield
        elif parsed.get_backend_name() == "postgresql":
            with self.engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        else:
            yield

    def _migrate_locked(self) -> None:
        current = self._revision()  # another process may have migrated while this one waited
        if current == HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        known = {script.revision for script in ScriptDirectory.from_config(cfg).walk_revisions()}
        if current is not None and current not in known:
            # Written by a newer segbench: upgrading (or writing) would misread or corrupt it.
            raise UserError(
                f"results database {self.display_url} is at schema revision '{current}', newer than this "
                f"segbench knows (latest {HEAD_REVISION}): upgrade segbench to use it"
            )
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()


#: pg_advisory_lock key that segbench's schema migrations take (any fixed number of our own)
_MIGRATION_LOCK_KEY = 0x5E6BE4C4


def busy_timeout_seconds() -> float:
    """How long a SQLite writer waits for another's lock: ``$SEGBENCH_BUSY_TIMEOUT`` seconds, else 30."""
    from segbench.store.liveness import env_seconds

    return env_seconds("SEGBENCH_BUSY_TIMEOUT", 30.0)


def _make_engine(url: str, is_sqlite: bool) -> Engine:
    if not is_sqlite:
        return create_engine(url, pool_pre_ping=True)
    busy = busy_timeout_seconds()
    engine = create_engine(url, connect_args={"timeout": busy})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # WAL lets `segbench report` read while a run writes; the busy timeout
        # makes concurrent writers wait instead of failing; FKs make cascades real.
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine


def open_db(url: str | None = None, *, create: bool = True) -> Database:
    return Database(resolve_url(url), create=create)
