"""The on-call list on the API: seeded once from YIJING_ONCALL_PHONES, kept by admins,
read (numbers masked) by supervisors, closed to operators; both databases."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import started_harness


async def test_given_oncall_phones_in_the_settings_when_started_then_seeded_and_admins_keep_it(
    tmp_path: Path, seeded_db_url: str
) -> None:
    async with started_harness(
        tmp_path, seeded_db_url, oncall_phones="023 5444 0001, +8613500000002"
    ) as h:
        seeded = await h.call("GET", "/oncall", as_user="demo")
        assert [r["phone"] for r in seeded] == ["+862354440001", "+8613500000002"]
        masked = await h.call("GET", "/oncall", as_user="supervisor")
        assert [r["phone"] for r in masked] == ["+86235****0001", "+86135****0002"]
        await h.call("GET", "/oncall", as_user="operator", expect=403)
        await h.call(
            "POST", "/oncall", as_user="supervisor", json={"phone": "13500000003"}, expect=403
        )
        added = await h.call(
            "POST", "/oncall", as_user="demo", json={"phone": "13500000003", "label": "值班室"},
            expect=201,
        )  # fmt: skip
        await h.call("POST", "/oncall", as_user="demo", json={"phone": "abc"}, expect=422)
        moved = await h.call(
            "PATCH", f"/oncall/{added['id']}", as_user="demo", json={"position": 0}
        )
        assert moved["position"] == 0
        order = [r["label"] for r in await h.call("GET", "/oncall", as_user="demo")]
        assert order[0] == "值班室"
        await h.call("DELETE", f"/oncall/{seeded[0]['id']}", as_user="demo")
        assert len(await h.call("GET", "/oncall", as_user="demo")) == 2
    # a second start does not seed again over the admins' list
    async with started_harness(tmp_path, seeded_db_url, oncall_phones="13500000009") as again:
        assert len(await again.call("GET", "/oncall", as_user="demo")) == 2
