"""Opening the store: ``<data_dir>/assistant.db`` (SQLite, WAL) with its schema brought to the Alembic head.

Nothing is built at import time; ``open_store`` creates the engine and the session factory.

Connection settings (one listener, on every new connection):
- ``journal_mode=WAL``: API readers never block the inference worker's writes, nor the reverse.
- ``synchronous=FULL`` by default: the WAL is fsynced at every commit, so a committed utterance row
  or label survives a power cut (a Jetson unplugged from the wall), matching the write-ahead rule
  "audio fsynced + row committed before the worker sees it". Commits happen at human rate (per utterance,
  label or job step), so the extra fsync costs nothing noticeable. ``NORMAL`` is allowed where the disk
  is slow: in WAL mode it never corrupts, it may only lose the last commits on power loss.
- ``foreign_keys=ON`` (SQLite's default is OFF, per connection), ``busy_timeout`` so that concurrent
  writers wait instead of failing at once.
- sqlite3's own transaction handling is switched off and every transaction starts with
  ``BEGIN IMMEDIATE``: a session takes the write lock at its start, so read-then-write code (state
  checks, "refuse if a job is running") is atomic, and a writer never hits SQLITE_BUSY_SNAPSHOT, which
  busy_timeout cannot wait out. ``session(write=False)`` uses a deferred BEGIN for long reads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from assistant.errors import DiskFullError, StoreError
from assistant.store.files import AUDIO_DIR, ENCODED_DIR, ensure_private_dir, os_error, sweep_temp_files

log = logging.getLogger(__name__)

DB_NAME = "assistant.db"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 10_000


def casefold_sql(value: Any) -> Any:
    """SQL function ``py_casefold``: SQLite's LIKE/lower() fold ASCII only; transcripts are not ASCII-only."""
    return value.casefold() if isinstance(value, str) else value


def _on_connect(dbapi_conn: Any, _record: Any, *, synchronous: str, busy_timeout_ms: int) -> None:
    dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (_on_begin)
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")  # first: switching to WAL may wait
        mode = cur.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # e.g. a file system without shared-memory support
            log.warning("SQLite refused WAL mode (journal_mode=%s): readers and writers will block each other",
                        mode)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA synchronous={synchronous}")
    finally:
        cur.close()
    dbapi_conn.create_function("py_casefold", 1, casefold_sql, deterministic=True)


def _on_begin(conn: Any) -> None:
    conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'IMMEDIATE')}")


def translate_error(exc: BaseException, db_path: Path) -> StoreError | None:
    """A StoreError naming the database and the fix for storage-level failures; None for anything else
    (constraint violations and SQL errors are bugs and propagate as they are)."""
    orig = getattr(exc, "orig", exc)
    name = str(getattr(orig, "sqlite_errorname", "") or "")
    msg = str(orig).lower()
    data_dir = db_path.parent
    keep = "nothing was deleted"
    if name.startswith("SQLITE_FULL") or "database or disk is full" in msg:
        return DiskFullError(f"the disk holding the database {db_path} is full",
                          fix="free disk space, or lower store.retention_days / store.retention_max_mb, or move "
                              f"data_dir to a larger disk; {keep}")
    if name.startswith("SQLITE_READONLY") or "readonly database" in msg:
        return StoreError(f"the database {db_path} is read-only",
                          fix=f"make {data_dir} and the files in it owned and writable by the user running the "
                              "assistant, or remount the disk read-write")
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in msg or "malformed" in msg:
        return StoreError(f"the database {db_path} is corrupt or not an SQLite database ({orig})",
                          fix=f"stop the assistant, move {db_path.name} aside (with any -wal/-shm files) and start "
                              "again to create an empty one; try `sqlite3 <file> .recover` on the moved copy; "
                              f"the audio under {data_dir / AUDIO_DIR} is kept")
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM")) or "unable to open database" in msg:
        return StoreError(f"cannot open the database {db_path}",
                          fix=f"check that {data_dir} exists and is writable by the user running the assistant")
    if name.startswith("SQLITE_IOERR") or "disk i/o error" in msg:
        return StoreError(f"disk I/O error on the database {db_path} ({orig})",
                          fix=f"check the disk holding {data_dir} (full, failing, or removed)")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in msg:
        return StoreError(f"the database {db_path} stayed locked by another writer",
                          fix="is a second assistant running on the same data_dir? stop it, or retry")
    return None


@dataclass
class Store:
    """The open store: the engine, session factories and where everything lives."""

    data_dir: Path
    db_path: Path
    engine: Engine
    sessionmaker: sessionmaker[Session]
    read_sessionmaker: sessionmaker[Session] = field(repr=False)

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back if it raises.

        Keep it short (never across inference or a training step): a write session holds SQLite's
        single write lock from its first statement. ``write=False``: deferred BEGIN for long reads.
        Objects stay usable after the block (``expire_on_commit=False``).
        """
        s = (self.sessionmaker if write else self.read_sessionmaker)()
        try:
            yield s
            s.commit()
        except DBAPIError as exc:
            _rollback(s)
            err = translate_error(exc, self.db_path)
            if err is None:
                raise
            raise err from exc
        except BaseException:
            _rollback(s)
            raise
        finally:
            s.close()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rollback(s: Session) -> None:
    try:
        s.rollback()
    except DBAPIError as exc:  # the connection itself is broken: the original error is the one to report
        log.warning("rollback failed: %s", exc)


def alembic_config(url: str, connection: Any = None) -> Any:
    """An in-code Alembic config (no alembic.ini): script_location = the package's migrations dir."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ConfigParser interpolates '%'
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head())


def current_revision(store: Store) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _migrate(engine: Engine, db_path: Path) -> None:
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    script = ScriptDirectory.from_config(cfg)
    known = {r.revision for r in script.walk_revisions()}
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        # Foreign keys OFF while migrating (it is a no-op inside a transaction, so set it before BEGIN):
        # a batch migration rebuilds a table with DROP TABLE, which would otherwise fire ON DELETE actions.
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            current = MigrationContext.configure(conn).get_current_revision()
            if current is not None and current not in known:
                raise StoreError(f"the database {db_path} has schema revision {current!r}, newer than this "
                                 "version of the assistant knows",
                                 fix="upgrade the assistant package (the database was left untouched)")
            if current == script.get_current_head():
                return  # the common case: nothing to run (and no Alembic log lines at every start)
            log.info("migrating %s from schema revision %s to %s", db_path, current, script.get_current_head())
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
            problems = raw.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                log.error("foreign key violations after migrating %s (rows kept): %s", db_path, problems[:20])
        finally:
            try:
                conn.rollback()
                raw.execute("PRAGMA foreign_keys=ON")
            except Exception:  # noqa: BLE001 - a broken connection must not come back from the pool
                conn.invalidate()


def open_store(data_dir: Path | str, *, synchronous: str = "FULL", busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Store:
    """Create/open ``<data_dir>/assistant.db``, apply the migrations, return the Store.

    Raises StoreError (naming the path and the fix) when the data dir or the database cannot be used;
    it never deletes or replaces an existing database.
    """
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
    data_dir = Path(data_dir).expanduser().resolve()
    if not data_dir.is_dir():
        ensure_private_dir(data_dir)  # created by us: 0700. An existing dir's mode is the user's choice.
    elif data_dir.stat().st_mode & 0o007:  # its group may enter (the service's: the CLI reads the token)
        log.warning("the data dir %s is open to every user; it holds voice recordings (chmod 750 it)",
                    data_dir)
    for sub in (AUDIO_DIR, ENCODED_DIR):
        ensure_private_dir(data_dir / sub, data_dir)
    sweep_temp_files(data_dir)
    db_path = data_dir / DB_NAME
    try:
        # Create it 0600 before SQLite does (SQLite would use the umask, typically 0644); the -wal and -shm
        # files then inherit the database file's mode.
        os.close(os.open(db_path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(db_path, 0o600)
    except OSError as exc:
        raise os_error(exc, db_path, data_dir) from exc

    engine = create_engine(URL.create("sqlite+pysqlite", database=str(db_path)),
                           connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000})
    event.listen(engine, "connect", partial(_on_connect, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms))
    event.listen(engine, "begin", _on_begin)
    try:
        _migrate(engine, db_path)
    except DBAPIError as exc:
        engine.dispose()
        err = translate_error(exc, db_path)
        if err is None:
            raise
        raise err from exc
    except BaseException:
        engine.dispose()
        raise
    reader = engine.execution_options(sqlite_begin="DEFERRED")
    return Store(data_dir=data_dir, db_path=db_path, engine=engine,
                 sessionmaker=sessionmaker(bind=engine, expire_on_commit=False),
                 read_sessionmaker=sessionmaker(bind=reader, expire_on_commit=False))
