"""The merchant calls the resident of their open order from their phone page, in a real
browser (issue 16): the button asks the service, which rings the merchant's own phone
first; the page never shows the resident's number."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import create_engine, insert, select

from dispatch.models import Call, Ticket
from registry.models import Merchant, ResidentPhone
from tests.e2e.conftest import PHONE, Pages, Server, login, shot

pytestmark = pytest.mark.e2e


def test_given_an_accepted_order_when_the_merchant_taps_call_then_their_phone_rings_first(
    pages: Pages, server: Server
) -> None:
    engine = create_engine(f"sqlite:///{Path(server.data_dir) / 'yijing.db'}")
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(Ticket).values(
                    id=901, resident_id=1, category_code="medicine", state="accepted",
                    merchant_id=1, code_word="红梅", created_at=now, accepted_at=now,
                    deadline_at=now + timedelta(hours=1), plan=[1],
                )
            )  # fmt: skip
            shop_phone = conn.execute(select(Merchant.phones).where(Merchant.id == 1)).scalar()[0]
            numbers = list(
                conn.execute(select(ResidentPhone.number).where(ResidentPhone.resident_id == 1))
                .scalars()
            )  # fmt: skip
        phone = pages.open(PHONE)
        login(phone, "merchant1", "/merchant")
        order = phone.locator("#orders article[data-ticket-id='901']")
        order.locator("button.connect").click()
        expect(phone.locator(".toast")).to_contain_text("马上给您的手机打电话")
        shot(phone, "16-merchant-masked-call")

        # the toast follows the answer, which follows the commit of the merchant's leg
        with engine.connect() as conn:
            placed = conn.execute(select(Call.number).where(Call.purpose == "masked")).scalars()
            assert list(placed) == [shop_phone]
        text = phone.locator("body").inner_text()
        assert not [n for n in numbers if n.removeprefix("+86").lstrip("0") in text]
        assert pages.errors == []
    finally:
        engine.dispose()
