"""Opening the results database: URL resolution, SQLite tuning, migrations.

Any SQLAlchemy URL works (SQLite by default, PostgreSQL for a team). Two ways to
open one:

* for writing (``segbench run``, ``db merge``, ``db upgrade``): a missing SQLite
  file is created, the schema is brought to the newest Alembic revision (a
  database written by an older segbench is upgraded in place rather than
  misread), and someone else's database (tables of its own, no segbench
  revision) is refused;
* read-only (every other command): nothing is created, migrated or written —
  SQLite is opened with ``mode=ro`` — and a database that is empty, foreign, or
  at an older revision is a clear error instead of a schema written into it.

SQLite failures that are about the file, not the query (a full disk, a read-only
file, a corrupted one) become a :class:`UserError` naming the database, whichever
statement hits them; the transaction they interrupt is rolled back whole.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from segbench.errors import UserError

DEFAULT_URL = "sqlite:///results/segbench.db"
#: The newest migration; checked before importing Alembic so read-only commands stay fast.
HEAD_REVISION = "0005"
MIGRATIONS = Path(__file__).with_name("migrations")


#: what starts a URL rather than a file path: a scheme and its colon (``sqlite:``, ``postgresql+psycopg:``)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def resolve_url(url: str | None) -> str:
    """``--db`` if given, else ``$SEGBENCH_DB``, else SQLite under ``results/``.

    A plain file path (``results/mine.db``, ``/data/team.db``) names a SQLite
    file, as ``sqlite:///PATH`` would: users type paths, and the URL form is
    SQLAlchemy's business. Anything that starts like a URL stays one, so a
    mistyped URL (``postgresql:/host/db``) is reported, not turned into a file.
    """
    chosen = url or os.environ.get("SEGBENCH_DB") or DEFAULT_URL
    return chosen if _SCHEME.match(chosen) else f"sqlite:///{chosen}"


def display_url(url: str | None) -> str:
    """The database's URL as messages show it: the password hidden."""
    resolved = resolve_url(url)
    try:
        return make_url(resolved).render_as_string(hide_password=True)
    except ArgumentError:
        return resolved


class Database:
    """An engine plus a session factory: migrated to head for writing, or read-only at head."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = resolve_url(url)
        #: the schema revision a writer found on open, before migrating (None: a new database)
        self.migrated_from: str | None = None
        try:
            parsed = make_url(self.url)
        except ArgumentError:
            raise UserError(
                f"--db: '{self.url}' is not a database URL (e.g. sqlite:///results/segbench.db, or a file path)"
            ) from None
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        #: the SQLite file (None for a server or an in-memory database)
        self.sqlite_path = (
            Path(parsed.database)
            if self.is_sqlite and parsed.database and parsed.database != ":memory:"
            else None
        )
        created = self._prepare_file(create) if self.sqlite_path is not None else False
        try:
            self.engine = _make_engine(self.url, self.sqlite_path, self.display_url, writable=create)
        except (ArgumentError, ImportError) as exc:  # unknown dialect, or its driver is not installed
            raise UserError(f"--db: cannot use '{self.display_url}': {exc}") from None
        try:
            if create:
                self._migrate()
                self._use_wal()
            else:
                self._check_readable()
        except DBAPIError as exc:  # unreachable server, refused login, a file that is not a database
            self._discard(created)
            raise UserError(f"cannot open results database {self.display_url}: {exc.orig}") from None
        except BaseException:
            self._discard(created)
            raise
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _prepare_file(self, writable: bool) -> bool:
        """Check the SQLite file can be used as asked, before any connection; True if it is to be created.

        A writer needs the file *and* its folder writable (WAL keeps ``-wal`` and
        ``-shm`` files beside it), so a read-only place is refused up front with
        its reason rather than half-way through a run.
        """
        path = self.sqlite_path
        assert path is not None
        if path.is_dir():
            raise UserError(f"results database {path} is a directory; pass --db a file path")
        exists = path.exists()
        if not exists and not writable:
            raise UserError(f"no results database at {path} (run a suite first, or pass --db URL)")
        if writable:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"cannot create results database {path}: {exc}") from None
            for what, where in (("file", path), ("folder", path.parent)):
                if (where.exists() or what == "folder") and not os.access(where, os.W_OK):
                    raise UserError(
                        f"results database {path} cannot be written: its {what} {where} is read-only "
                        "(permissions, or a read-only disk); pass --db to a writable place"
                    )
        return not exists

    def _discard(self, created: bool) -> None:
        """A database file this open created and could not finish (say, the disk filled) is removed:
        half a schema would later be mistaken for someone else's database."""
        if hasattr(self, "engine"):
            self.engine.dispose()
        if created and self.sqlite_path is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.sqlite_path}{suffix}").unlink(missing_ok=True)

    @property
    def display_url(self) -> str:
        return display_url(self.url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        with self.sessions() as session, session.begin():
            yield session

    def _use_wal(self) -> None:
        """WAL lets `segbench report` read while a run writes. Setting it writes the file's header,
        so it happens only after the file is known to be segbench's (never into someone else's)."""
        if self.sqlite_path is not None:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")

    def _tables(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(inspect(conn).get_table_names())

    def _revision(self) -> str | None:
        with self.engine.connect() as conn:
            if "alembic_version" not in set(inspect(conn).get_table_names()):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def _check_readable(self) -> None:
        """Read-only: the database must already be segbench's, at this segbench's schema."""
        revision = self._revision()
        if revision == HEAD_REVISION:
            return
        if revision is None:
            tables = self._tables()
            if not tables:
                raise UserError(
                    f"results database {self.display_url} is empty: nothing recorded yet (run a suite first)"
                )
            raise UserError(self._foreign(tables))
        raise UserError(
            f"results database {self.display_url} is at schema revision '{revision}', not this segbench's "
            f"'{HEAD_REVISION}'; read-only commands never migrate: run `segbench db upgrade --db URL` "
            "(or any writing command) to bring it to this version, or use the segbench that wrote it"
        )

    def _foreign(self, tables: set[str]) -> str:
        shown = ", ".join(sorted(tables)[:8]) + (f" and {len(tables) - 8} more" if len(tables) > 8 else "")
        return (
            f"{self.display_url} is not a segbench results database: it has tables of its own ({shown}) "
            "and no segbench schema revision; segbench will not write into it — pass --db to another file"
        )

    def _migrate(self) -> None:
        revision = self.migrated_from = self._revision()
        if revision == HEAD_REVISION:
            return
        tables = self._tables() if revision is None and self.sqlite_path is not None else set()
        if tables and "alembic_version" not in tables:
            # someone else's SQLite file: refused before even a lock file is put beside it (a
            # migration in progress elsewhere has created alembic_version first, so it is not this).
            # A server database may hold other applications' tables beside segbench's.
            raise UserError(self._foreign(tables))
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
        if current is None and self.sqlite_path is not None and (tables := self._tables()):
            # under the lock: another process's half-done migration is never taken for a foreign schema
            raise UserError(self._foreign(tables))
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
                f"segbench knows (latest {HEAD_REVISION}) or another application's: upgrade segbench to use it"
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


#: SQLite result codes that are about the file, not the statement, and what to tell the user
_SQLITE_TROUBLE = {
    "SQLITE_FULL": "no space left on the disk holding it; free some and run again",
    "SQLITE_READONLY": "it is read-only here (file or folder permissions, or a read-only disk); "
    "pass --db to a writable place",
    "SQLITE_CANTOPEN": "it cannot be opened (check the file's and its folder's permissions)",
    "SQLITE_CORRUPT": "the file is corrupted; restore it from a backup (segbench will not touch it)",
    "SQLITE_NOTADB": "the file is not an SQLite database; pass --db to another file",
    "SQLITE_IOERR": "the disk reported an I/O error",
    "SQLITE_PERM": "access denied by the operating system",
}


def sqlite_trouble(exc: BaseException, folder: Path | None = None) -> str | None:
    """What a file-level SQLite failure means for the user, or None for any other error.

    SQLite reports a full disk as ``SQLITE_FULL`` only when the database file
    itself cannot grow; when its WAL index cannot, it says "disk I/O error", so an
    I/O error on a disk with (almost) no space left is named for what it is.
    """
    name = getattr(exc, "sqlite_errorname", None) or ""
    meaning = next(
        (text for code, text in _SQLITE_TROUBLE.items() if name == code or name.startswith(code + "_")), None
    )
    if meaning is not None and name.startswith("SQLITE_IOERR") and folder is not None:
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            free = None
        if free is not None and free < _NEARLY_FULL:
            meaning = f"{_SQLITE_TROUBLE['SQLITE_FULL']} ({free // 1024} KiB free)"
    return meaning


#: below this much free space an I/O error is taken for a full disk
_NEARLY_FULL = 1 << 20


def _on_read_only_medium(path: Path) -> bool:
    """A database nobody can be writing: its folder is not writable and no WAL is pending.

    SQLite cannot open a WAL database read-only without creating its ``-shm``
    file, which a read-only disk or share forbids; such a file can be read as
    *immutable* — unless a ``-wal`` file holds commits not yet in the database,
    which immutable reading would silently skip (then opening fails, saying so).
    """
    wal = Path(f"{path}-wal")
    return not os.access(path.parent, os.W_OK) and (not wal.exists() or wal.stat().st_size == 0)


def _make_engine(url: str, sqlite_path: Path | None, shown: str, *, writable: bool) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if sqlite_path is not None and not writable:
        # mode=ro: even a statement that tried to write could not; a URI keeps odd file names intact
        query = {**parsed.query, "uri": "true", "mode": "ro"}
        if _on_read_only_medium(sqlite_path):
            query["immutable"] = "1"
        parsed = parsed.set(database=sqlite_path.resolve().as_uri(), query=query)
    busy = busy_timeout_seconds()
    engine = create_engine(parsed, connect_args={"timeout": busy})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # The busy timeout makes concurrent writers wait instead of failing; FKs make cascades real.
        # (WAL is a property of the file, set once it is known to be segbench's: Database._use_wal.)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "handle_error")
    def _file_trouble(context: ExceptionContext) -> UserError | None:
        meaning = sqlite_trouble(context.original_exception, sqlite_path.parent if sqlite_path else None)
        if meaning is None:
            return None
        return UserError(f"results database {shown}: {meaning} ({context.original_exception})")

    return engine


def open_db(url: str | None = None, *, create: bool = True) -> Database:
    """The results database: for writing (created and migrated) or, with ``create=False``, read-only."""
    return Database(resolve_url(url), create=create)


def open_existing(url: str | None = None, *, purpose: str) -> Database:
    """An existing database opened for writing (migrated); never a new one.

    For maintenance commands (``db upgrade``, ``db repair``): run on a mistyped
    path they would otherwise create a new, empty file.
    """
    resolved = resolve_url(url)
    try:
        file = make_url(resolved).database if make_url(resolved).get_backend_name() == "sqlite" else None
    except ArgumentError:
        file = None  # open_db says what is wrong with the URL
    if file and file != ":memory:" and not Path(file).exists():
        raise UserError(f"no results database at {file} to {purpose}")
    return open_db(resolved)


def upgrade_db(url: str | None = None) -> tuple[str | None, str]:
    """Migrate an existing database to this segbench's schema: (revision before, revision now)."""
    db = open_existing(url, purpose="upgrade")
    try:
        return db.migrated_from, HEAD_REVISION
    finally:
        db.close()
