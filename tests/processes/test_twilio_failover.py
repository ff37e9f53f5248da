"""Real `yijing run` processes on one PostgreSQL with Twilio (the REST fake on loopback,
Twilio's side played by a signer posting to whichever process, as a proxy would send it).

A ticket dispatched through the standby's API is placed once by the owner; the merchant's
phone rings (the status callback reaches the standby, which hands it to the owner); the
owner is killed with -9 mid-offer; the standby takes over within 10 s and loads the call
from `twilio_call`; a third process stands by, and the answered call's menu comes from the
new owner through it; the new owner is killed mid-menu, the third takes over and takes the
merchant's 1. One Calls.create in the fake's REST log in all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.conftest import DEMO_PASSWORD
from tests.processes.test_failover import TAKEOVER_S, Process, standing_by, until
from tests.providers.twilio.twilio_fakes import (
    ACCOUNT,
    PLATFORM,
    PUBLIC,
    TOKEN,
    Doc,
    FakeTwilioApi,
    sign,
)


async def post(
    process: Process, route: str, params: Mapping[str, str], query: Mapping[str, Any]
) -> tuple[int, str]:
    """One webhook as Twilio sends it, signed against the shared public URL."""
    qs = urlencode(query)
    headers = {"X-Twilio-Signature": sign(TOKEN, f"{PUBLIC}/{route}?{qs}", params)}
    async with process.http.post(
        f"{process.url}/twilio/{route}?{qs}", data=dict(params), headers=headers
    ) as resp:
        return resp.status, await resp.text()


def form(sid: str, status: str, **extra: str) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": ACCOUNT, "CallStatus": status, **extra}


async def offered_menu(process: Process, sid: str, ref: str) -> Doc:
    """The answered call's TwiML through `process`, following the hold loop's redirects
    until the offer's menu (a Gather) comes."""

    async def menu() -> Doc | None:
        code, body = await post(process, "voice", form(sid, "in-progress"), {"ref": ref})
        assert code == 200, body
        doc = Doc(body)
        assert "Hangup" not in doc.verbs(), body
        return doc if doc.gather_action() else None

    found: Doc = await until(menu, within=30, every=0.2)
    return found


@contextlib.asynccontextmanager
async def two_processes(
    tmp: Path, db_url: str, api: FakeTwilioApi
) -> AsyncIterator[tuple[Process, Process]]:
    env = {
        "YIJING_DATABASE_URL": db_url,
        "YIJING_TELEPHONY": "twilio",
        "YIJING_TWILIO_ACCOUNT_SID": ACCOUNT,
        "YIJING_TWILIO_AUTH_TOKEN": TOKEN,
        "YIJING_TWILIO_FROM_NUMBER": PLATFORM,
        # the proxy's URL, the same on every process: signatures are checked against it
        "YIJING_TWILIO_PUBLIC_URL": PUBLIC,
        "YIJING_TWILIO_API_BASE_URL": api.url,
        "YIJING_SECRET_KEY": "test-secret-key-shared-by-both-processes",
        "YIJING_DEMO_PASSWORD": DEMO_PASSWORD,
        "YIJING_QUIET_START": "23:59:59.999999",
        "YIJING_QUIET_END": "00:00",
        "YIJING_DESK_OPEN": "00:00",
        "YIJING_DESK_CLOSE": "23:59:59.999999",
        "YIJING_TELL_RESIDENT": "false",
        # one merchant at a time, at any hour (see test_failover)
        "YIJING_PARALLEL_OFFERS_URGENT": "1",
    }
    first, second = Process("first", tmp, env), Process("second", tmp, env)
    try:
        await first.start()

        async def first_owns() -> Any:
            body = await first.health()
            return body if body and body["role"] == "owner" and body["status"] == "ok" else None

        await until(first_owns)
        await second.start()

        async def second_stands_by() -> Any:
            body = await second.health()
            return body if body and body["role"] == "standby" else None

        await until(second_stands_by)
        yield first, second
    except BaseException:
        for process in (first, second):
            if process.log.exists():
                tail = process.log.read_text(errors="replace").splitlines()[-60:]
                print(f"--- {process.name} server.log (last lines)", *tail, sep="\n")
        raise
    finally:
        for process in (second, first):
            await process.stop()


@pytest.mark.parametrize("seeded_db_url", ["postgresql"], indirect=True)
async def test_given_twilio_on_two_processes_when_the_owner_is_killed_mid_offer_then_finished(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with FakeTwilioApi() as api, two_processes(tmp_path, seeded_db_url, api) as pair:
        first, second = pair
        # an operator on the standby dispatches; the owner places the call, once
        ticket = await second.call(
            "POST", "/tickets", json={"category": "medicine", "resident_id": 1}
        )
        await second.call("POST", f"/tickets/{ticket['id']}/dispatch", json={})
        [create] = await until(lambda: _async(api.calls_created()))
        ref = parse_qs(urlsplit(create.form["Url"]).query)["ref"][0]
        assert create.form["Url"] == f"{PUBLIC}/voice?ref={ref}"
        [sid] = api.sids_created
        # Twilio reports it ringing through the proxy, which picked the standby
        code, _ = await post(second, "status", form(sid, "ringing"), {"ref": ref})
        assert code == 204

        async def ringing() -> Any:
            offers = (await second.call("GET", f"/tickets/{ticket['id']}"))["offers"]
            return offers if [o["state"] for o in offers] == ["ringing"] else None

        await until(ringing)
        # a bad signature is refused on the standby too, before anything is handed over
        async with second.http.post(
            f"{second.url}/twilio/status?ref={ref}",
            data=form(sid, "completed"),
            headers={"X-Twilio-Signature": "forged"},
        ) as resp:
            assert resp.status == 403
        api.statuses[sid] = "ringing"  # the merchant's phone rings on while the owner dies
        first.kill()
        killed = asyncio.get_running_loop().time()

        async def second_owns() -> Any:
            body = await second.health()
            return body if body and body["role"] == "owner" and body["status"] == "ok" else None

        await until(second_owns, within=TAKEOVER_S)
        took = asyncio.get_running_loop().time() - killed
        assert took < TAKEOVER_S
        async with standing_by(tmp_path, "third", second) as third:
            # the merchant answers; Twilio's voice request reaches the new standby, which
            # hands it to the new owner; its answer is the offer's menu
            api.statuses[sid] = "in-progress"
            menu = await offered_menu(third, sid, ref)
            action = menu.gather_action()
            assert action is not None and action.startswith(f"{PUBLIC}/gather?")
            query = {k: v[0] for k, v in parse_qs(urlsplit(action).query).items()}
            # the merchant hears the menu while its owner dies: the third process takes
            # over with the call mid-menu, as the second left it in twilio_call
            second.kill()
            killed = asyncio.get_running_loop().time()

            async def third_owns() -> Any:
                body = await third.health()
                return body if body and body["role"] == "owner" and body["status"] == "ok" else None

            await until(third_owns, within=TAKEOVER_S)
            took_again = asyncio.get_running_loop().time() - killed
            code, body = await post(third, "gather", form(sid, "in-progress", Digits="1"), query)
            assert code == 200, body

            async def accepted() -> Any:
                detail = await third.call("GET", f"/tickets/{ticket['id']}")
                return detail if detail["state"] == "accepted" else None

            await until(accepted)
            print(f"twilio failover mid-menu: the third took over {took_again:.1f} s after")
        assert len(api.calls_created()) == 1  # never placed twice
        print(f"twilio failover: the standby owned the calls {took:.1f} s after kill -9")


async def _async(value: Any) -> Any:
    return value
