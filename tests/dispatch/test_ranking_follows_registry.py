"""The ranking follows the registry's events: a merchant added, changed, put under another
contract or imported through the registry's use cases (no HTTP handler, nobody calling
`invalidate_merchants`) is seen by the very next ranking, while the merchant index is
otherwise kept for `index_ttl_s` and the clock does not move."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dispatch.matching import Candidate
from providers.memory import MemoryPBX
from registry import usecases
from registry.models import ContractStatus, Merchant, Resident
from registry.schemas import ContractIn, MerchantIn, ServiceIn
from tests.dispatch.usecases import UseCases, use_cases

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "registry"


async def ranked(uc: UseCases, ticket_id: int) -> dict[int, Candidate]:
    return {c.merchant_id: c for c in await uc.dispatch.ranking.candidates(ticket_id)}


async def test_given_a_warm_merchant_index_when_the_registry_changes_merchants_then_the_next_ranking_sees_it(  # noqa: E501
    seeded_db_url: str,
) -> None:
    async with MemoryPBX(time_scale=1.0) as pbx, use_cases(seeded_db_url, pbx) as uc:
        ticket = await uc.dispatch.tickets.create_ticket(
            user=None, category="medicine", resident_id=1
        )
        assert ticket.id is not None
        async with uc.store.read() as session:
            resident = await session.get(Resident, 1)
            assert resident is not None
            grid = resident.grid_code
        before = await ranked(uc, ticket.id)  # the index is read and kept from here
        assert before
        reads = uc.dispatch.ranking.merchant_index

        # a new merchant
        saved = await usecases.create_merchant(
            uc.store,
            data=MerchantIn(
                name="新开社区药房",
                kind="pharmacy",
                grid_code=grid,
                service_grids=[grid],
                phones=["13900009999"],
                services=[ServiceIn(category="medicine")],
                hours={str(d): [("00:00", "24:00")] for d in range(7)},
            ),
            actor="admin",
        )
        new_id = saved.merchant.id
        assert new_id is not None and new_id not in before
        after = await ranked(uc, ticket.id)
        assert new_id in after and after[new_id].eligible

        # its contract suspended
        await usecases.change_contract(
            uc.store,
            merchant_id=new_id,
            contract=ContractIn(status=ContractStatus.SUSPENDED),
            actor="admin",
        )
        after = await ranked(uc, ticket.id)
        assert not after[new_id].eligible
        assert "contract_invalid" in after[new_id].reason_codes

        # active again, then it stops offering the category
        await usecases.change_contract(
            uc.store,
            merchant_id=new_id,
            contract=ContractIn(status=ContractStatus.ACTIVE),
            actor="admin",
        )
        assert (await ranked(uc, ticket.id))[new_id].eligible
        await usecases.update_merchant(
            uc.store, merchant_id=new_id, patch={"services": []}, actor="admin"
        )
        assert new_id not in await ranked(uc, ticket.id)

        # a merchants file imported (百草堂药房 serves the first two grids with medicine)
        report, import_id = await usecases.run_import(
            uc.store,
            kind="merchants",
            name="merchants.csv",
            data=(FIXTURES / "merchants_good.csv").read_bytes(),
            dry_run=False,
            actor="admin",
            source="test",
        )
        assert report.ok and import_id
        assert grid in ("BG01", "BG02")
        assert "百草堂药房" not in {c.name for c in before.values()}
        assert "百草堂药房" in {c.name for c in (await ranked(uc, ticket.id)).values()}

        # and with nothing changed in between, the index is kept
        async with uc.store.read() as session:
            first = await reads(session)
            assert await reads(session) is first


async def test_given_a_ranking_reading_merchants_when_the_registry_changes_meanwhile_then_that_index_is_not_kept(  # noqa: E501
    seeded_db_url: str,
) -> None:
    async with MemoryPBX(time_scale=1.0) as pbx, use_cases(seeded_db_url, pbx) as uc:
        ranking = uc.dispatch.ranking
        async with uc.store.read() as session:
            old = (await merchant_row(uc, 1)).capacity
            real_execute = session.execute

            async def execute(*args: Any, **kwargs: Any) -> Any:
                # the merchants are read; a change commits before the index is built
                result = await real_execute(*args, **kwargs)
                session.execute = real_execute  # type: ignore[method-assign]
                await usecases.update_merchant(
                    uc.store, merchant_id=1, patch={"capacity": old + 1}, actor="admin"
                )
                return result

            session.execute = execute  # type: ignore[method-assign]
            raced = await ranking.merchant_index(session)
        assert raced.merchants[1].capacity == old  # used for the ranking under way...
        async with uc.store.read() as session:
            fresh = await ranking.merchant_index(session)
        assert fresh.merchants[1].capacity == old + 1  # ...but never kept


async def merchant_row(uc: UseCases, merchant_id: int) -> Merchant:
    async with uc.store.read() as session:
        merchant = await session.get(Merchant, merchant_id)
        assert merchant is not None
        return merchant
