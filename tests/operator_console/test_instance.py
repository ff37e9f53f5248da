"""Who owns the calls on PostgreSQL: the first process owns them, a second stands by and
names the owner of its own database (advisory locks are per database), and takes over when
the owner's connection goes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from eventlog.db import make_engine
from operator_console import instance
from operator_console.instance import instance_lock
from tests.conftest import _PG_BASE, DROPPER, _pg_create


@pytest.fixture
async def other_database() -> AsyncIterator[str]:
    name = f"yijing_t_{uuid.uuid4().hex[:12]}"
    await _pg_create(name)
    yield f"{_PG_BASE}/{name}"
    DROPPER.drop(name)


@pytest.mark.parametrize("migrated_db_url", ["postgresql"], indirect=True)
async def test_given_owners_of_two_databases_when_a_standby_starts_then_it_names_its_own(
    migrated_db_url: str, other_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engines = [make_engine(u) for u in (other_database, migrated_db_url, migrated_db_url)]
    try:
        monkeypatch.setattr(instance, "_me", lambda: "yijing of the other database")
        async with instance_lock(engines[0], other_database, standby=True) as elsewhere:
            monkeypatch.setattr(instance, "_me", lambda: "yijing owner")
            owning = instance_lock(engines[1], migrated_db_url, standby=True)
            owner = await owning.__aenter__()
            monkeypatch.setattr(instance, "_me", lambda: "yijing standby")
            async with instance_lock(
                engines[2], migrated_db_url, standby=True, poll_s=0.05
            ) as standby:
                assert elsewhere.owner and owner.owner
                assert standby.role == "standby"
                assert standby.holder == "yijing owner"
                await owning.__aexit__(None, None, None)  # the owner's connection closes
                # the standby takes over within its poll
                await asyncio.wait_for(standby.became_owner.wait(), 10)
                assert standby.role == "owner" and standby.holder == "yijing standby"
    finally:
        for engine in engines:
            await engine.dispose()
