"""Resident search: name parts, pinyin initials and full pinyin, phone suffix, address,
grid; ranking; catching up with writes; on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from registry import repository as repo
from registry.schemas import ResidentIn
from registry.search import SearchIndex, search_residents


async def _add(session: AsyncSession, **values: object) -> int:
    data = ResidentIn.model_validate({"grid_code": "BG02", **values})
    resident, _ = await repo.save_resident(session, data=data, actor="test")
    assert resident.id is not None
    return resident.id


async def _ids(index: SearchIndex, session: AsyncSession, query: str) -> list[int]:
    return [h.entry.id for h in await search_residents(index, session, query=query)]


async def test_given_residents_when_searching_every_way_then_the_right_one_ranks_first(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        # 龚 is not a demo surname, so this 龚秀英 is the only one (the demo has 王秀英s)
        wxy = await _add(
            session,
            name="龚秀英",
            address="巴王路77号3栋2单元502室",
            phones=[{"number": "023-6688 4321", "kind": "landline"}],
        )
        longer = await _add(session, name="龚秀英明", address="滨江路1号")
        await session.commit()
        index = SearchIndex()
        # 郭秀英 of the demo shares the initials: both come back, exact initials first
        assert wxy in (await _ids(index, session, "gxy"))
        assert wxy in (await _ids(index, session, "GXY"))
        assert (await _ids(index, session, "gxym"))[0] == longer
        assert await _ids(index, session, "gongxiuying") == [wxy, longer]
        assert (await _ids(index, session, "gongxiu"))[:2] == [wxy, longer]
        assert (await _ids(index, session, "龚秀"))[:2] == [wxy, longer]  # closer name first
        assert (await _ids(index, session, "龚秀英"))[0] == wxy
        assert wxy in await _ids(index, session, "秀英")
        assert await _ids(index, session, "4321") == [wxy]
        assert await _ids(index, session, "巴王路77号") == [wxy]
        assert await _ids(index, session, "秀英 巴王路") == [wxy]
        assert wxy in await _ids(index, session, "BG02")
        assert wxy in await _ids(index, session, "第二网格")
        assert (await _ids(index, session, "龚秀音"))[0] == wxy  # a near miss, by rapidfuzz
        assert await _ids(index, session, "zzzzqqq") == []


async def test_given_a_loaded_index_when_a_resident_is_written_then_the_next_search_sees_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    index = SearchIndex()
    async with sessions() as session:
        assert await _ids(index, session, "冉翠花") == []
        rid = await _add(session, name="冉翠花", address="白公路9号")
        await session.commit()
        assert await _ids(index, session, "rch") == [rid]
        resident = await repo.get_resident(session, resident_id=rid)
        current = await repo.resident_input(session, resident=resident)
        renamed = ResidentIn.model_validate(current.model_dump() | {"name": "冉翠兰"})
        await repo.save_resident(session, data=renamed, resident_id=rid, actor="test")
        await session.commit()
        assert await _ids(index, session, "rch") == []
        assert await _ids(index, session, "rancuilan") == [rid]


async def test_given_a_second_index_like_another_process_when_one_writes_then_both_see_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    mine, theirs = SearchIndex(), SearchIndex()
    async with sessions() as session:
        await _ids(mine, session, "x")
        await _ids(theirs, session, "x")
        rid = await _add(session, name="谭德明", phones=[{"number": "13912345678"}])
        await session.commit()
        assert await _ids(theirs, session, "5678") == [rid]
        assert await _ids(mine, session, "tdm") == [rid]
