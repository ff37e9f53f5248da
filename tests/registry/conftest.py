"""A migrated database holding the demo community, for registry tests on both dialects."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from eventlog.db import make_engine, make_sessionmaker
from registry.models import User


@pytest.fixture
async def sessions(registry_db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a database of the test's own with a 60-resident demo community and an
    admin user (id 1), copied from the session's migrated template (tests/conftest.py)."""
    engine = make_engine(registry_db_url)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


async def admin_user(session: AsyncSession) -> User:
    """The admin the fixture made."""
    from sqlalchemy import select

    return (await session.execute(select(User).where(User.username == "admin"))).scalar_one()
