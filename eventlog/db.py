"""Database plumbing shared by every package: the async engine, sessions and column types.

Engines are made from an explicit URL (no module-level engine). SQLite gets WAL and
foreign keys; PostgreSQL is used as is. Datetimes are timezone-aware UTC.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator

#: An autoincrementing 64-bit key that SQLite also accepts as its rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC; naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Refuse naive datetimes and store UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Return UTC-aware datetimes on every dialect."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = JSON().with_variant(JSON(none_as_null=True), "postgresql")


def utcnow() -> datetime:
    """The current time, UTC-aware."""
    return datetime.now(UTC)


def make_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An async engine for `url`, tuned per dialect.

    `hide_parameters`: a statement's parameters are names, addresses and health notes;
    they never appear in an error's message (and so in no log line or traceback).
    """
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def engine_context(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine disposed on exit."""
    engine = make_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


def sync_url(url: str) -> str:
    """The synchronous driver URL for the same database (Alembic, APScheduler job store)."""
    return (
        url.replace("sqlite+aiosqlite", "sqlite")
        .replace("postgresql+asyncpg", "postgresql+psycopg")
        .replace("postgresql://", "postgresql+psycopg://")
    )


class EnumText(TypeDecorator[Any]):
    """A string enum stored as its value in a VARCHAR (no native enum types to migrate)."""

    impl = String(32)
    cache_ok = True

    def __init__(self, enum_cls: type[enum.Enum], length: int = 32) -> None:
        super().__init__(length)
        self.enum_cls = enum_cls

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        """Store the member's value; refuse values the enum does not know."""
        if value is None:
            return None
        return str(self.enum_cls(value).value)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        """Load the member."""
        return None if value is None else self.enum_cls(value)
