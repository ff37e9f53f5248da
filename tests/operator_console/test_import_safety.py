"""An upload never misidentifies a resident and never holds the service up: a row with
another resident's phone is refused (the row and the owner named) and calls from that
number still find its owner; while a file is being checked, tickets, logins and
`/healthz` answer; a client that goes away stops its import and nothing is kept; an
import never deadlocks with a resident edit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select, text, update

from eventlog.models import Event
from registry import importing
from registry.models import RegistryRevision, Resident
from tests.conftest import Harness, eventually

PHONE_OF_1 = "+862354000001"  # resident 1 of the demo community (a landline)


def residents_file(n: int) -> bytes:
    """n good rows, each with a phone of its own."""
    lines = ["姓名,电话,网格,地址"]
    lines += [f"测试{i:05d},1395555{i:04d},BG0{i % 6 + 1},白公路{i}号" for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


def form_of(data: bytes, *, dry_run: bool = False) -> aiohttp.FormData:
    """A multipart upload as the console sends it."""
    form = aiohttp.FormData()
    form.add_field("file", data, filename="residents.csv")
    form.add_field("dry_run", "true" if dry_run else "false")
    return form


class Gate:
    """Stands in for `registry.importing.pause`: the first pause waits until opened, so a
    test can act while an import is half way through checking its file."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()

    async def __call__(self) -> None:
        self.reached.set()
        await self.opened.wait()


async def import_under_way(h: Harness, gate: Gate) -> None:
    """Wait until an upload is being imported (held at the gate, or holding the lock)."""

    async def check() -> bool:
        return gate.reached.is_set() or h.services.store.write_lock.locked()

    await eventually(check, within=30)


async def count(h: Harness, table: Any) -> int:
    """Rows in a table."""
    async with h.services.store.read() as session:
        return int((await session.execute(select(func.count()).select_from(table))).scalar_one())


async def test_given_an_upload_with_resident_1s_phone_then_row_and_owner_are_named_and_calls_find_1(
    harness: Harness,
) -> None:
    h = harness
    data = "姓名,电话,网格\n冒名者,+862354000001,BG01\n".encode()
    for dry_run in (True, False):
        refused = await h.call(
            "POST",
            "/registry/import/residents",
            as_user="demo",
            data=form_of(data, dry_run=dry_run),
            expect=422,
        )
        assert refused["error_id"] == "import_rejected"
        errors = refused["details"]["errors"]
        assert [(e["line"], e["code"], e["resident_id"]) for e in errors] == [(2, "phone_taken", 1)]
        assert "resident 1" in errors[0]["reason"]
    assert await count(h, Resident) == 300
    imported = [e for e in await h.services.store.events_since(0) if "imported" in e["name"]]
    assert imported == []

    # a call from that number is still resident 1's, greeted as such
    ref = await h.pbx.dial_in(PHONE_OF_1)

    async def offered() -> Any:
        events = await h.services.store.events_since(0)
        return next((e for e in events if e["name"] == "call.offered"), None)

    event = await eventually(offered)
    assert event["data"]["resident_id"] == 1 and event["data"]["registered"] is True
    assert "冒名者" not in " ".join(h.pbx.calls[ref].transcript)


async def test_given_a_file_being_checked_when_tickets_logins_and_healthz_come_then_they_answer(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    gate = Gate()
    monkeypatch.setattr(importing, "pause", gate, raising=False)
    await h.login("demo")
    upload = asyncio.create_task(
        h.call(
            "POST",
            "/registry/import/residents",
            as_user="demo",
            data=form_of(residents_file(300)),
        )
    )
    try:
        await import_under_way(h, gate)
        ticket = await h.call(
            "POST", "/tickets", json={"category": "medicine", "resident_id": 1}, expect=201
        )
        await h.login("supervisor")
        health = await h.client.get("/healthz")
        assert health.status == 200
        # all of that was done while the import was still on its way
        assert not upload.done()
    finally:
        gate.opened.set()
    report = await upload
    assert report["committed"] and report["created"] == 300
    assert ticket["state"] == "new"


async def test_given_a_client_that_goes_away_mid_import_then_the_import_stops_and_nothing_is_kept(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    # as under `web.run_app` (aiohttp's test server cancels a handler whose client left,
    # which production does not do)
    server = h.client.server.runner.server  # type: ignore[union-attr]
    assert server is not None
    server.handler_cancellation = False
    caplog.set_level(logging.INFO, logger="registry.importing")
    gate = Gate()
    monkeypatch.setattr(importing, "pause", gate, raising=False)
    token = await h.login("demo")
    before = await count(h, Resident)
    upload = asyncio.create_task(
        h.client.post(
            "/api/v1/registry/import/residents",
            data=form_of(residents_file(1000)),
            headers={"Authorization": f"Bearer {token}"},
        )
    )
    await import_under_way(h, gate)
    upload.cancel()  # the client closes its connection
    with contextlib.suppress(asyncio.CancelledError):
        await upload
    gate.opened.set()

    async def finished() -> bool:
        stopped = any("stopped" in r.getMessage() for r in caplog.records)
        idle = not h.services.store.write_lock.locked()
        return (stopped or await count(h, Resident) != before) and idle

    await eventually(finished, within=120)
    assert await count(h, Resident) == before
    events = await h.services.store.events_since(0)
    assert [e for e in events if e["name"] == "registry.imported"] == []
    assert await count(h, Event) == len(events)

    # the service is free for the next upload, which goes through
    again = await h.call(
        "POST",
        "/registry/import/residents",
        as_user="demo",
        data=form_of(residents_file(3)),
    )
    assert again["committed"] and again["created"] == 3


async def test_given_an_import_waiting_for_the_lock_when_an_edit_waits_on_the_import_then_both_end(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h = harness
    caplog.set_level(logging.INFO, logger="registry.importing")
    store = h.services.store
    await h.login("demo")
    await store.write_lock.acquire()  # a unit of work in flight ...
    try:
        upload = asyncio.create_task(
            h.call(
                "POST",
                "/registry/import/residents",
                as_user="demo",
                data=form_of(residents_file(50)),
            )
        )
        dialect = h.services.engine.dialect.name
        if dialect == "postgresql":
            # the import wrote its rows and waits for the lock, holding the revision row
            async def holding() -> bool:
                async with store.sessions() as probe:
                    found = await probe.scalar(
                        text(
                            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                            "WHERE c.relname = 'registry_revision' AND l.mode = 'RowExclusiveLock' "
                            "AND l.pid <> pg_backend_pid()"
                        )
                    )
                    return bool(found)

            await eventually(holding, within=30)

        # ... which now edits a resident: it needs the revision row the import holds
        async def edit() -> None:
            async with store.sessions() as session:
                await session.execute(
                    update(RegistryRevision).values(value=RegistryRevision.value + 1)
                )
                await session.commit()

        await asyncio.wait_for(edit(), 30)  # no deadlock: the import stepped back
    finally:
        store.write_lock.release()
    report = await asyncio.wait_for(upload, 60)
    assert report["committed"] and report["created"] == 50
    if dialect == "postgresql":
        assert any("writing under the lock" in r.getMessage() for r in caplog.records)
