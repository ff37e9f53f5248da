"""The phone line as the console sees it: `GET /api/v1/telephony` for the banner on page
load, the telephony events on the live stream, the simulator's outage switch, and the
pages rendering the banner from the first paint. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.conftest import Harness, eventually


async def line(h: Harness, **kw: Any) -> dict[str, Any]:
    status: dict[str, Any] = await h.call("GET", "/telephony", **kw)
    return status


async def test_given_the_simulator_takes_the_line_down_then_status_and_events_say_so(
    harness: Harness,
) -> None:
    h = harness
    before = await line(h)
    assert before["up"] is True and before["backend"] == "memory" and before["since"] is None

    await h.call("POST", "/sim/link", as_user="demo", json={"up": False})

    async def down_event() -> Any:
        events = await h.call("GET", f"/events?since={before['seq']}")
        return next((e for e in events if e["name"] == "telephony.down"), None)

    down = await eventually(down_event)
    status = await line(h)
    assert status["up"] is False and status["since"] == down["occurred_at"]
    assert status["seq"] >= down["seq"]
    # a caller cannot reach the hotline meanwhile
    failed = await h.call(
        "POST", "/sim/dial", as_user="demo", json={"number": "+862354000001"}, expect=503
    )
    assert failed["error_id"] == "telephony_unavailable"

    await h.call("POST", "/sim/link", as_user="demo", json={"up": True})
    assert (await line(h))["up"] is True

    async def up_event() -> Any:
        events = await h.call("GET", f"/events?since={down['seq']}")
        return next((e for e in events if e["name"] == "telephony.up"), None)

    await eventually(up_event)


async def test_given_the_line_down_then_staff_pages_render_the_banner_and_merchants_get_403(
    harness: Harness,
) -> None:
    h = harness
    token = await h.login("operator")
    cookies = {"Authorization": f"Bearer {token}"}
    page = await (await h.client.get("/", headers=cookies)).text()
    assert 'id="phone-outage"' in page and 'data-line="up" hidden' in page

    h.pbx.set_link(False)
    page = await (await h.client.get("/", headers=cookies)).text()
    assert 'data-line="down">' in page and "电话线路中断：外呼暂停，恢复后自动继续" in page
    supervisor = await h.login("supervisor")
    wall = await (
        await h.client.get("/wallboard?lang=en", headers={"Authorization": f"Bearer {supervisor}"})
    ).text()
    assert "Phone line down" in wall and 'data-line="down">' in wall
    await h.call("GET", "/telephony", as_user="merchant1", expect=403)
