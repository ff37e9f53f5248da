"""Alembic, driven from code: `yijing db upgrade`, `yijing db check` and the app's start.

Past one process (DESIGN.md §12) a database is migrated once per deploy, by `yijing db
upgrade`, never by whichever process happens to start first: a newer process migrating
under older ones still serving would change their tables under them. So a process started
in `check` mode (`YIJING_MIGRATE`, the default on PostgreSQL) only reads the database's
revision and refuses to start on one that is behind (not migrated yet) or ahead (migrated
by a newer Yijing), naming both revisions. SQLite is the embedded single process: it
keeps migrating at start (`auto`), so `make run` works on a fresh machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import make_url

from eventlog.db import sync_url

MIGRATIONS = Path(__file__).parent / "migrations"

#: `auto`: migrate at start; `check`: only check the revision, `yijing db upgrade` migrates
MigrateMode = Literal["auto", "check"]

UPGRADE_HINT = "run `yijing db upgrade` (once per deploy, before starting the processes)"


def alembic_config(database_url: str) -> Config:
    """An Alembic config for a database URL (async URLs are turned into sync ones)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(database_url))
    config.attributes["configure_logging"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema up to `revision`."""
    command.upgrade(alembic_config(database_url), revision)


@dataclass(frozen=True)
class SchemaState:
    """Where a database's schema is against this Yijing's migration scripts."""

    #: `current`: at the head; `behind`: at an older revision; `ahead`: at a revision these
    #: scripts do not know (a newer Yijing migrated it); `empty`: never migrated
    status: Literal["current", "behind", "ahead", "empty"]
    #: the database's revision(s), from its `alembic_version` table
    current: tuple[str, ...]
    #: the scripts' head revision(s)
    head: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether a process may serve this database as it is."""
        return self.status == "current"

    @property
    def message(self) -> str:
        """One line for an operator: where the database is and what to do about it."""
        at, needs = _names(self.current), _names(self.head)
        if self.status == "current":
            return f"the database is at the latest revision ({at})"
        if self.status == "behind":
            return f"the database is at revision {at}, this Yijing needs {needs}: {UPGRADE_HINT}"
        if self.status == "ahead":
            return (
                f"the database is at revision {at}, which this Yijing does not know (its "
                f"latest is {needs}): a newer Yijing migrated it; upgrade this Yijing"
            )
        return f"the database has no Yijing schema yet (this Yijing needs {needs}): {UPGRADE_HINT}"


def _names(revisions: tuple[str, ...]) -> str:
    return ", ".join(revisions) or "none"


class SchemaMismatch(RuntimeError):
    """The database is not at this Yijing's revision and the process may not migrate it."""

    def __init__(self, state: SchemaState) -> None:
        super().__init__(state.message)
        self.state = state


def schema_state(database_url: str) -> SchemaState:
    """Compare the database's Alembic revision(s) with the scripts' head; writes nothing."""
    script = ScriptDirectory.from_config(alembic_config(database_url))
    head = tuple(sorted(script.get_heads()))
    current = _current_revisions(database_url)
    if not current:
        status: Literal["current", "behind", "ahead", "empty"] = "empty"
    elif set(current) == set(head):
        status = "current"
    elif set(current) <= {s.revision for s in script.walk_revisions()}:
        status = "behind"
    else:
        status = "ahead"
    return SchemaState(status, current, head)


def _current_revisions(database_url: str) -> tuple[str, ...]:
    url = make_url(sync_url(database_url))
    file = (url.database or "") if url.get_backend_name() == "sqlite" else ""
    if file not in ("", ":memory:") and not Path(file).exists():
        return ()  # a SQLite file not made yet: connecting would make it, a check writes nothing
    engine = create_engine(url, poolclass=pool.NullPool, hide_parameters=True)
    try:
        with engine.connect() as connection:
            return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))
    finally:
        engine.dispose()


def prepare(database_url: str, mode: MigrateMode) -> SchemaState:
    """Before a process uses the database: raise SchemaMismatch unless it is at the head;
    in `auto` mode a database that is behind or empty is migrated first (one a newer Yijing
    migrated is refused in both modes: these scripts cannot bring it down)."""
    state = schema_state(database_url)
    if mode == "auto" and state.status in ("behind", "empty"):
        upgrade(database_url)
        state = schema_state(database_url)
    if not state.ok:
        raise SchemaMismatch(state)
    return state
