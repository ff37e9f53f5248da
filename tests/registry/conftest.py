"""A migrated database holding the demo community, for registry tests on both dialects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from eventlog.db import make_engine, make_sessionmaker
from operator_console.migrate import upgrade
from registry import repository as repo
from registry.demo import generate
from registry.models import Role, User


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on a fresh database with the demo community and an admin user (id 1)."""
    await asyncio.to_thread(upgrade, db_url)
    engine = make_engine(db_url)
    maker = make_sessionmaker(engine)
    async with maker() as session:
        await repo.add_community(session, community=generate(residents=60))
        session.add(User(username="admin", password_hash="x", role=Role.ADMIN))
        await session.commit()
    try:
        yield maker
    finally:
        await engine.dispose()


async def admin_user(session: AsyncSession) -> User:
    """The admin the fixture made."""
    from sqlalchemy import select

    return (await session.execute(select(User).where(User.username == "admin"))).scalar_one()
