"""Export residents (with contacts) and merchants to CSV / XLSX in the shapes the import
reads, so an exported file can be edited and imported back. Cells that a spreadsheet would
run as a formula are neutralised. ID numbers are masked unless asked for in full; every
exported resident is written to the access log (reason "export")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import phonenumbers
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from registry import repository as repo
from registry.importing import MAX_CONTACTS, MERCHANT_COLUMNS, RESIDENT_COLUMNS
from registry.models import Grid, Merchant, Resident, User
from registry.tabular import write_table

STATUS_ZH = {"registered": "在册", "suspended": "暂停", "moved_out": "迁出", "deceased": "已故"}
CONTACT_SLOTS = 3


def _national(number: str) -> str:
    """+862354441234 -> 023 5444 1234: readable, and no leading + for a spreadsheet."""
    try:
        parsed = phonenumbers.parse(number, "CN")
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)


def _header(spec: dict[str, tuple[str, ...]], keys: Sequence[str]) -> list[str]:
    return [spec[k][0] for k in keys]


RESIDENT_KEYS = list(RESIDENT_COLUMNS)
MERCHANT_KEYS = list(MERCHANT_COLUMNS)


async def export_residents(
    session: AsyncSession,
    *,
    fmt: str,
    user: User | None,
    full_id_numbers: bool = False,
) -> bytes:
    """Every resident (any status) with contacts, as a CSV or XLSX file."""
    assert MAX_CONTACTS >= CONTACT_SLOTS
    grids = dict((await session.execute(select(col(Grid.code), col(Grid.name)))).all())
    pharmacies = dict((await session.execute(select(col(Merchant.id), col(Merchant.name)))).all())
    header = _header(RESIDENT_COLUMNS, RESIDENT_KEYS)
    for n in range(1, CONTACT_SLOTS + 1):
        header += [f"联系人{n}{f}" for f in ("姓名", "关系", "类型", "电话", "何时联系")]
    residents = (await session.execute(select(Resident).order_by(col(Resident.id)))).scalars().all()
    rows: list[list[Any]] = []
    for resident in residents:
        data = await repo.resident_input(session, resident=resident)
        shown_id = data.id_number if full_id_numbers else repo.mask_id_number(data.id_number)
        values: dict[str, Any] = {
            **data.model_dump(mode="json"),
            "id_number": shown_id,
            "phones": "; ".join(_national(p.number) for p in data.phones),
            "grid": grids.get(data.grid_code, data.grid_code),
            "groups": "; ".join(data.groups),
            "usual_pharmacy": pharmacies.get(data.usual_pharmacy_id, "")
            if data.usual_pharmacy_id
            else "",
            "status": STATUS_ZH.get(data.status.value, data.status.value),
            "status_reason": "",
        }
        row = ["" if values.get(k) is None else values.get(k) for k in RESIDENT_KEYS]
        for n in range(CONTACT_SLOTS):
            if n < len(data.contacts):
                c = data.contacts[n]
                row += [
                    c.name,
                    c.relation,
                    c.kind,
                    "; ".join(_national(p) for p in c.phones),
                    c.when_to_call,
                ]
            else:
                row += [""] * 5
        rows.append(row)
    repo.log_access(
        session,
        resident_ids=[r.id for r in residents if r.id is not None],
        user=user,
        reason="export",
    )
    return write_table(fmt, header, rows)


def _hours_text(hours: dict[str, Any]) -> str:
    return "; ".join(
        f"{int(day) + 1} {start}-{end}"
        for day, spans in sorted(hours.items())
        for start, end in spans
    )


def _holidays_text(holidays: dict[str, Any]) -> str:
    parts = []
    for day, spans in sorted(holidays.items()):
        if not spans:
            parts.append(f"{day} 休息")
        parts += [f"{day} {a}-{b}" for a, b in spans]
    return "; ".join(parts)


async def export_merchants(session: AsyncSession, *, fmt: str) -> bytes:
    """Every merchant with services, hours and contract, as a CSV or XLSX file."""
    grids = dict((await session.execute(select(col(Grid.code), col(Grid.name)))).all())
    merchants = (await session.execute(select(Merchant).order_by(col(Merchant.id)))).scalars().all()
    rows: list[list[Any]] = []
    for merchant in merchants:
        data = await repo.merchant_input(session, merchant=merchant)
        values: dict[str, Any] = {
            **data.model_dump(mode="json"),
            "grid": grids.get(data.grid_code, data.grid_code),
            "service_grids": "; ".join(grids.get(g, g) for g in data.service_grids),
            "hours": _hours_text(data.hours_json()),
            "holidays": _holidays_text(data.holidays_json()),
            "phones": "; ".join(_national(p) for p in data.phones),
            "services": "; ".join(
                f"{s.category}:{s.price_note}" if s.price_note else s.category
                for s in data.services
            ),
            "contract_status": data.contract_status.value,
        }
        rows.append(["" if values.get(k) is None else values.get(k) for k in MERCHANT_KEYS])
    return write_table(fmt, _header(MERCHANT_COLUMNS, MERCHANT_KEYS), rows)
