"""Alembic environment: every table of every package, one metadata."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool
from sqlmodel import SQLModel

import dispatch.models  # noqa: F401  (imported for their tables)
import eventlog.commands
import eventlog.models  # noqa: F401
import operator_console.models  # noqa: F401
import providers.twilio.state  # noqa: F401
import registry.models  # noqa: F401
from eventlog.db import EnumText

config = context.config


def render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    """Enum columns are plain strings in the schema."""
    if type_ == "type" and isinstance(obj, EnumText):
        return f"sa.String(length={obj.impl.length})"  # type: ignore[attr-defined]
    return False


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Leave alone tables that other libraries own (APScheduler's job store)."""
    return not (type_ == "table" and reflected and compare_to is None)


target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    """Run migrations on a live connection."""
    engine = create_engine(
        config.get_main_option("sqlalchemy.url") or "",
        poolclass=pool.NullPool,
        hide_parameters=True,
    )
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            render_item=render_item,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
